package local_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/drctl/drctl/targets"
	"github.com/drctl/drctl/targets/local"
)

const (
	helperEnv  = "DRCTL_LOCAL_TEST_HELPER"
	processes  = 4
	increments = 40
)

// TestCrossProcess runs writers in separate processes against one
// directory: exactly one wins a create-only race, and compare-and-swap
// increments of a counter lose no update. Goroutines alone would not
// prove the file locking, which must hold between processes.
func TestCrossProcess(t *testing.T) {
	dir := t.TempDir()
	tg, err := local.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tg.Put(t.Context(), "counter", []byte("0")); err != nil {
		t.Fatal(err)
	}
	cmds := make([]*exec.Cmd, processes)
	outs := make([]*strings.Builder, processes)
	for i := range cmds {
		cmds[i] = exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
		cmds[i].Env = append(os.Environ(), helperEnv+"="+dir)
		outs[i] = &strings.Builder{}
		cmds[i].Stdout, cmds[i].Stderr = outs[i], outs[i]
		if err := cmds[i].Start(); err != nil {
			t.Fatal(err)
		}
	}
	winners := 0
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper %d: %v\n%s", i, err, outs[i])
		}
		if strings.Contains(outs[i].String(), "created") {
			winners++
		}
	}
	if winners != 1 {
		t.Fatalf("%d processes created the key, want 1", winners)
	}
	data, _, err := tg.Get(t.Context(), "counter")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(data); got != strconv.Itoa(processes*increments) {
		t.Fatalf("counter = %s after %d increments: updates were lost", got, processes*increments)
	}
}

// TestHelperProcess is the body of one writer process.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv(helperEnv)
	if dir == "" {
		t.Skip("run by TestCrossProcess")
	}
	ctx := t.Context()
	tg, err := local.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = tg.PutIfAbsent(ctx, "create/once", []byte(strconv.Itoa(os.Getpid())))
	switch {
	case err == nil:
		fmt.Println("created")
	case !errors.Is(err, targets.ErrExists):
		t.Fatal(err)
	}
	for range increments {
		for {
			data, info, err := tg.Get(ctx, "counter")
			if err != nil {
				t.Fatal(err)
			}
			n, _ := strconv.Atoi(string(data))
			_, err = tg.PutIfMatch(ctx, "counter", []byte(strconv.Itoa(n+1)), info.ETag)
			if err == nil {
				break
			}
			if !errors.Is(err, targets.ErrPrecondition) {
				t.Fatal(err)
			}
		}
	}
}
