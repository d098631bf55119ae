package failover

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockSite takes the site's failover lock: one failover at a time per
// state directory. It fails at once, naming the holder, rather than
// queueing an operator's second attempt silently.
func lockSite(stateDir string) (func(), error) {
	return lockFile(filepath.Join(stateDir, "failover.lock"),
		"another drctl failover is running at this site (state directory "+stateDir+")")
}

// lockFile takes an exclusive lock on path or fails with busy, naming the
// holder's pid; the lock goes with the process, also when it is killed.
func lockFile(path, busy string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		return nil, fmt.Errorf("%s (pid %s): wait for it, or check `drctl status`", busy, strings.TrimSpace(string(holder)))
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() { f.Close() }, nil
}

func runStatePath(stateDir, planName string) string {
	return filepath.Join(stateDir, "runs", planName+".json")
}

// loadRunState returns the state of this plan's earlier run at this site.
func loadRunState(stateDir, planName string) (*runState, bool, error) {
	data, err := os.ReadFile(runStatePath(stateDir, planName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read failover state: %w", err)
	}
	var st runState
	if err := json.Unmarshal(data, &st); err != nil || st.Run == "" {
		return nil, false, fmt.Errorf("failover state %s is damaged: move it away only if no failover of plan %s ran here", runStatePath(stateDir, planName), planName)
	}
	if st.Pins == nil {
		st.Pins = map[string]string{}
	}
	return &st, true, nil
}

// saveRunState writes the state atomically (temp file, fsync, rename).
func saveRunState(stateDir string, st *runState) error {
	path := runStatePath(stateDir, st.Plan)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("save failover state: %w", err)
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode failover state: %w", err)
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("save failover state: %w", err)
	}
	if _, err = f.Write(data); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("save failover state: %w", err)
	}
	return nil
}
