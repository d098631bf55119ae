package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/drctl/drctl/repo"
)

// Alert is the JSON body of an RPO webhook.
type Alert struct {
	// State is "violated" when the VM's newest recovery point became older
	// than its RPO target, "recovered" when a new one brought it back.
	State          string    `json:"state"`
	VM             string    `json:"vm"`
	Site           string    `json:"site"`
	Host           string    `json:"host,omitempty"`
	RPOSeconds     float64   `json:"rpo_seconds"`
	TargetSeconds  float64   `json:"target_seconds"`
	LatestSnapshot time.Time `json:"latest_snapshot,omitzero"`
	Time           time.Time `json:"time"`
}

// watchRPO checks every VM's RPO on a period, alerting on changes.
func (a *Agent) watchRPO(ctx context.Context) {
	t := time.NewTicker(a.opts.RPOCheck)
	defer t.Stop()
	started := a.opts.now()
	for {
		a.checkRPO(ctx, started)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (a *Agent) checkRPO(ctx context.Context, started time.Time) {
	a.mu.Lock()
	states := make([]*vmState, 0, len(a.vms))
	for _, st := range a.vms {
		states = append(states, st)
	}
	a.mu.Unlock()
	sort.Slice(states, func(i, j int) bool { return states[i].name < states[j].name })
	now := a.opts.now()
	for _, st := range states {
		a.lookupLatest(ctx, st)
		st.mu.Lock()
		latest := st.lastSuccess
		base := latest
		if base.IsZero() {
			base = started // never replicated: count from the agent's start
		}
		age := now.Sub(base)
		a.metrics.rpo.WithLabelValues(st.name).Set(age.Seconds())
		violated := st.rpo > 0 && age > st.rpo
		if violated != st.violated {
			st.violated = violated
			if violated {
				a.log.Error("RPO target missed: the newest recovery point is too old", "vm", st.name, "age", age.Round(time.Second), "target", st.rpo)
			} else if st.alerting {
				a.log.Info("RPO target met again", "vm", st.name, "age", age.Round(time.Second), "target", st.rpo)
			}
		}
		a.metrics.rpoViolated.WithLabelValues(st.name).Set(map[bool]float64{false: 0, true: 1}[violated])
		send := violated != st.alerting
		alert := Alert{State: "recovered", VM: st.name, Site: a.opts.Site, Host: a.opts.Host, RPOSeconds: age.Seconds(),
			TargetSeconds: st.rpo.Seconds(), LatestSnapshot: latest, Time: now.UTC()}
		if violated {
			alert.State = "violated"
		}
		st.mu.Unlock()
		if !send {
			continue
		}
		if err := a.notify(ctx, alert); err != nil {
			a.log.Warn("RPO webhook failed: retrying at the next check", "vm", st.name, "err", err)
			continue
		}
		st.mu.Lock()
		st.alerting = violated
		st.mu.Unlock()
	}
}

// lookupLatest learns the VM's newest snapshot from the repository once,
// so an agent restart does not forget how old the VM's data is.
func (a *Agent) lookupLatest(ctx context.Context, st *vmState) {
	st.mu.Lock()
	known, repository := st.known, st.repository
	st.mu.Unlock()
	if known {
		return
	}
	r, err := a.repository(ctx, repository)
	if err != nil {
		return
	}
	s, err := r.LatestSnapshot(ctx, st.name)
	if err != nil && !errors.Is(err, repo.ErrNoSnapshot) {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.known = true
	if s != nil && s.Time.After(st.lastSuccess) {
		st.lastSuccess = s.Time
		a.metrics.lastSuccess.WithLabelValues(st.name).Set(float64(s.Time.UnixNano()) / 1e9)
	}
}

// notify posts an alert to the webhook, if one is configured.
func (a *Agent) notify(ctx context.Context, alert Alert) error {
	a.mu.Lock()
	url := a.cfg.Agent.Webhook
	a.mu.Unlock()
	if url == "" {
		return nil
	}
	body, err := json.Marshal(alert)
	if err != nil {
		return fmt.Errorf("encode alert: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.opts.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("post webhook: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("post webhook: %s", resp.Status)
	}
	return nil
}
