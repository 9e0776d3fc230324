package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"

	"rtcp"
)

// policyReloader reads rtcp dp's policy files again (-config, and
// -token-file or $RTCP_TOKEN) and applies them to the running DP with
// SetPolicy, which keeps every link and session the new policy allows. A
// file that cannot be read or parsed, or a policy that lacks a key a flag
// names, changes nothing.
type policyReloader struct {
	sec    *security
	keys   [][2]string    // flags that name keys of the policy, and the keys
	member *clusterMember // adds the cluster's key, read at start only; or nil
	dp     *rtcp.DiscoverPoint
	log    *slog.Logger // for the warnings about files others can read

	mu  sync.Mutex // guards cur, and makes reloads one at a time
	cur *rtcp.Policy
}

// reload reads the files and applies them. It returns what changed, in
// words, or why nothing did: an error that names the file.
func (r *policyReloader) reload() (changes string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pol, err := r.sec.policy(r.log)
	if err != nil {
		return "", err
	}
	if pol == nil && r.cur != nil {
		// Not with the same flags: policy returns nil only without files.
		return "", fmt.Errorf("the files give no policy; the DP would admit everyone")
	}
	for _, k := range r.keys {
		if k[1] == "" {
			continue
		}
		if pol == nil {
			return "", fmt.Errorf("-%s %q names a key of the policy, and the files give none", k[0], k[1])
		}
		if _, ok := pol.Keys[k[1]]; !ok {
			return "", fmt.Errorf("-%s %q is not a key of the new policy: keep it in -config", k[0], k[1])
		}
	}
	if r.member != nil && r.member.policy != nil {
		if pol, err = withClusterKey(pol, r.member.peer.Credential); err != nil {
			return "", err
		}
	}
	if err := r.dp.SetPolicy(pol); err != nil {
		return "", err
	}
	changes = policyChanges(r.cur, pol)
	r.cur = pol
	return changes, nil
}

// policyChanges says, in one line, how next differs from prev: the keys
// added and removed by name, the keys whose secret changed, and which
// other parts changed. Secrets themselves never appear.
func policyChanges(prev, next *rtcp.Policy) string {
	if prev == nil {
		prev = new(rtcp.Policy)
	}
	if next == nil {
		next = new(rtcp.Policy)
	}
	var added, removed, changed []string
	for k, s := range next.Keys {
		if old, ok := prev.Keys[k]; !ok {
			added = append(added, k)
		} else if !bytes.Equal(old, s) {
			changed = append(changed, k)
		}
	}
	for k := range prev.Keys {
		if _, ok := next.Keys[k]; !ok {
			removed = append(removed, k)
		}
	}
	var parts []string
	list := func(what string, keys []string) {
		if len(keys) > 0 {
			slices.Sort(keys)
			parts = append(parts, fmt.Sprintf("%s %s", what, strings.Join(keys, ", ")))
		}
	}
	list("keys added:", added)
	list("keys removed:", removed)
	list("secrets changed:", changed)
	if !reflect.DeepEqual(prev.Names, next.Names) {
		parts = append(parts, fmt.Sprintf("name rules changed (%d, were %d)", len(next.Names), len(prev.Names)))
	}
	if prev.AnonymousServers != next.AnonymousServers {
		parts = append(parts, fmt.Sprintf("anonymous servers %s", onOff(next.AnonymousServers)))
	}
	if prev.AnonymousClients != next.AnonymousClients {
		parts = append(parts, fmt.Sprintf("anonymous clients %s", onOff(next.AnonymousClients)))
	}
	if !slices.Equal(prev.DPs, next.DPs) {
		parts = append(parts, "cluster keys changed")
	}
	if len(parts) == 0 {
		return "no change"
	}
	return strings.Join(parts, "; ")
}

func onOff(b bool) string {
	if b {
		return "admitted"
	}
	return "refused"
}

// reloadOnHangup reloads the policy at each SIGHUP, logging what changed
// or why nothing did, until the returned function is called.
func reloadOnHangup(r *policyReloader, log *slog.Logger) (stop func()) {
	r.cur = r.dp.Policy
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-ch:
				r.logReload(log)
			case <-done:
				return
			}
		}
	})
	return func() {
		signal.Stop(ch)
		close(done)
		wg.Wait()
	}
}

// logReload reloads, and logs the outcome on one line.
func (r *policyReloader) logReload(log *slog.Logger) {
	changes, err := r.reload()
	if err != nil {
		log.Error("rtcp dp: reload failed; the policy in force is unchanged", "err", err)
		return
	}
	log.Info("rtcp dp: policy reloaded; links and sessions it no longer allows are closed", "changes", changes)
}
