package rtcp

// onFreshStack runs f on a goroutine of its own and returns its error.
// The Connect/Ack exchange of a yamux session goes through encoding/json,
// whose reflection grows a goroutine's stack to 8 KiB or more; run on the
// goroutine that then relays the session for its whole life, that stack
// stays (an idle yamux session cost the DP 12 KB of stacks against 6 KB on
// the JSON transport). A short-lived goroutine gives it back at once.
func onFreshStack(f func() error) error {
	errc := make(chan error, 1)
	go func() { errc <- f() }()
	return <-errc
}
