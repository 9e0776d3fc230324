package rtcp

// WaitRead waits until Read will not block, without a buffer: the relay
// (internal/relay) calls it so that an idle session costs the DP no
// buffer. yamux's Read with an empty buffer waits for data, the end, a
// deadline or the link's end, and consumes nothing.
func (c *yamuxConn) WaitRead() error {
	_, err := c.Read(nil)
	return err
}

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
