package targets

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// ErrInjected is the cause of faults that do not name their own error.
var ErrInjected = errors.New("injected fault")

// Fault describes when a Faulty target fails, and how. The conditions
// count calls and bytes, never time, so tests that use them are
// deterministic.
type Fault struct {
	// Ops limits the fault to these operations; empty means all.
	Ops []Op
	// KeyPrefix limits the fault to keys (for List: prefixes) that start
	// with it.
	KeyPrefix string

	// AfterCalls lets this many matching calls through before the fault
	// starts firing.
	AfterCalls int
	// AfterBytes lets this much payload through matching calls before the
	// fault starts firing: a put fires when its data would take the total
	// past AfterBytes (a disk filling up, a connection cut mid-stream); a
	// get fires once the bytes received so far have reached it.
	AfterBytes int64
	// AfterObjects, for List only, passes this many objects to the
	// callback and then fails the listing: a connection lost between pages.
	AfterObjects int
	// Times is how often the fault fires before it is spent; 0 means it
	// fires on every matching call. "Fail twice then succeed" is Times: 2.
	Times int

	// Err is what a firing fault returns (wrapped with the op, key and
	// target). Nil means Transient(ErrInjected), unless Delay is set: a
	// fault with only a Delay slows calls down without failing them.
	Err error
	// Delay is waited before the call proceeds or fails. It honours ctx.
	Delay time.Duration
	// Landed makes the call reach the wrapped target first and then
	// returns the error anyway: the write happened, its answer was lost.
	// This is the case that makes conditional writes ambiguous.
	Landed bool
}

// Rule is a fault added to a Faulty target, with its counters.
type Rule struct {
	Fault
	calls int   // matching calls seen
	bytes int64 // payload bytes of matching calls that passed
	fired int
}

// spent reports whether the rule has fired as often as it may.
func (r *Rule) spent() bool { return r.Times > 0 && r.fired >= r.Times }

func (r *Rule) matches(op Op, key string) bool {
	return (len(r.Ops) == 0 || slices.Contains(r.Ops, op)) && strings.HasPrefix(key, r.KeyPrefix)
}

func (r *Rule) failure() error {
	switch {
	case r.Err != nil:
		return r.Err
	case r.Delay > 0 && !r.Landed && r.AfterObjects == 0:
		return nil
	default:
		return Transient(ErrInjected)
	}
}

// Faulty is a Target that injects faults, for tests that must prove
// "nothing lost" when storage fails. Add rules, run the code under test,
// then check Unfired to be sure every planned fault happened.
type Faulty struct {
	next  Target
	mu    sync.Mutex
	rules []*Rule
}

// NewFaulty wraps t. Without rules it passes every call through.
func NewFaulty(t Target) *Faulty { return &Faulty{next: t} }

// Unwrap returns the wrapped target.
func (f *Faulty) Unwrap() Target { return f.next }

// String names the wrapped target.
func (f *Faulty) String() string { return f.next.String() }

// Add installs a fault. Rules are checked in the order they were added;
// the first that fires decides the call.
func (f *Faulty) Add(fault Fault) *Rule {
	r := &Rule{Fault: fault}
	f.mu.Lock()
	f.rules = append(f.rules, r)
	f.mu.Unlock()
	return r
}

// FailNext makes the next n calls of op fail with err (nil: transient).
func (f *Faulty) FailNext(op Op, n int, err error) *Rule {
	return f.Add(Fault{Ops: []Op{op}, Times: n, Err: err})
}

// Clear removes every rule.
func (f *Faulty) Clear() {
	f.mu.Lock()
	f.rules = nil
	f.mu.Unlock()
}

// Fired reports how often r has fired.
func (f *Faulty) Fired(r *Rule) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return r.fired
}

// Unfired returns the rules that have not fired as planned: those with
// Times that fired fewer times, and those without that never fired.
func (f *Faulty) Unfired() []Fault {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Fault
	for _, r := range f.rules {
		if r.fired == 0 || (r.Times > 0 && r.fired < r.Times) {
			out = append(out, r.Fault)
		}
	}
	return out
}

// decide counts a call against the rules and returns the one that fires,
// if any. sent is the payload of a put.
func (f *Faulty) decide(op Op, key string, sent int64) *Rule {
	f.mu.Lock()
	defer f.mu.Unlock()
	var hit *Rule
	for _, r := range f.rules {
		if !r.matches(op, key) {
			continue
		}
		r.calls++
		if hit != nil || r.spent() || r.calls <= r.AfterCalls {
			r.bytes += sent
			continue
		}
		if r.AfterBytes > 0 {
			if r.bytes+sent <= r.AfterBytes && (sent > 0 || r.bytes < r.AfterBytes) {
				r.bytes += sent
				continue
			}
		}
		if r.AfterObjects > 0 && op != OpList {
			continue
		}
		r.fired++
		hit = r
	}
	return hit
}

// received adds bytes read by a get to the rules that count them.
func (f *Faulty) received(op Op, key string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.rules {
		if r.matches(op, key) {
			r.bytes += int64(n)
		}
	}
}

// before runs the delay of a firing rule and says whether the call must
// fail before reaching the wrapped target.
func (f *Faulty) before(ctx context.Context, r *Rule, op Op, key string) (failNow bool, err error) {
	if r == nil {
		return false, nil
	}
	if r.Delay > 0 {
		t := time.NewTimer(r.Delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return true, fmt.Errorf("%s %q on %s: %w", op, key, f.next, ctx.Err())
		case <-t.C:
		}
	}
	if r.Landed || r.AfterObjects > 0 {
		return false, nil
	}
	if e := r.failure(); e != nil {
		return true, f.wrap(op, key, e)
	}
	return false, nil
}

func (f *Faulty) wrap(op Op, key string, err error) error {
	return fmt.Errorf("%s %q on %s: %w", op, key, f.next, err)
}

// after turns a call that went through into the rule's failure when the
// rule is Landed.
func (f *Faulty) after(r *Rule, op Op, key string, err error) error {
	if r != nil && r.Landed {
		return f.wrap(op, key, r.failure())
	}
	return err
}

func (f *Faulty) Get(ctx context.Context, key string) ([]byte, ObjectInfo, error) {
	r := f.decide(OpGet, key, 0)
	if fail, err := f.before(ctx, r, OpGet, key); fail {
		return nil, ObjectInfo{}, err
	}
	data, info, err := f.next.Get(ctx, key)
	f.received(OpGet, key, len(data))
	if err = f.after(r, OpGet, key, err); err != nil {
		return nil, ObjectInfo{}, err
	}
	return data, info, nil
}

func (f *Faulty) GetRange(ctx context.Context, key string, off, length int64) ([]byte, error) {
	r := f.decide(OpGetRange, key, 0)
	if fail, err := f.before(ctx, r, OpGetRange, key); fail {
		return nil, err
	}
	data, err := f.next.GetRange(ctx, key, off, length)
	f.received(OpGetRange, key, len(data))
	if err = f.after(r, OpGetRange, key, err); err != nil {
		return nil, err
	}
	return data, nil
}

func (f *Faulty) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	r := f.decide(OpStat, key, 0)
	if fail, err := f.before(ctx, r, OpStat, key); fail {
		return ObjectInfo{}, err
	}
	info, err := f.next.Stat(ctx, key)
	if err = f.after(r, OpStat, key, err); err != nil {
		return ObjectInfo{}, err
	}
	return info, nil
}

// put is the common path of the three writes.
func (f *Faulty) put(ctx context.Context, op Op, key string, data []byte,
	call func(context.Context) (ObjectInfo, error)) (ObjectInfo, error) {
	r := f.decide(op, key, int64(len(data)))
	if fail, err := f.before(ctx, r, op, key); fail {
		return ObjectInfo{}, err
	}
	info, err := call(ctx)
	if err = f.after(r, op, key, err); err != nil {
		return ObjectInfo{}, err
	}
	return info, nil
}

func (f *Faulty) Put(ctx context.Context, key string, data []byte) (ObjectInfo, error) {
	return f.put(ctx, OpPut, key, data, func(ctx context.Context) (ObjectInfo, error) {
		return f.next.Put(ctx, key, data)
	})
}

func (f *Faulty) PutIfAbsent(ctx context.Context, key string, data []byte) (ObjectInfo, error) {
	return f.put(ctx, OpPutIfAbsent, key, data, func(ctx context.Context) (ObjectInfo, error) {
		return f.next.PutIfAbsent(ctx, key, data)
	})
}

func (f *Faulty) PutIfMatch(ctx context.Context, key string, data []byte, etag string) (ObjectInfo, error) {
	return f.put(ctx, OpPutIfMatch, key, data, func(ctx context.Context) (ObjectInfo, error) {
		return f.next.PutIfMatch(ctx, key, data, etag)
	})
}

func (f *Faulty) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	r := f.decide(OpList, prefix, 0)
	if fail, err := f.before(ctx, r, OpList, prefix); fail {
		return err
	}
	if r == nil || r.AfterObjects == 0 {
		return f.after(r, OpList, prefix, f.next.List(ctx, prefix, fn))
	}
	errCut := f.wrap(OpList, prefix, r.failure())
	n := 0
	err := f.next.List(ctx, prefix, func(oi ObjectInfo) error {
		if n == r.AfterObjects {
			return errCut
		}
		n++
		return fn(oi)
	})
	if err == nil && n < r.AfterObjects {
		f.mu.Lock()
		r.fired-- // the listing ended before the cut
		f.mu.Unlock()
		return nil
	}
	if err == nil {
		return errCut
	}
	return err
}

func (f *Faulty) Delete(ctx context.Context, key string) error {
	r := f.decide(OpDelete, key, 0)
	if fail, err := f.before(ctx, r, OpDelete, key); fail {
		return err
	}
	return f.after(r, OpDelete, key, f.next.Delete(ctx, key))
}
