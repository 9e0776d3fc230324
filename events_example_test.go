package rtcp_test

import (
	"context"
	"fmt"
	"log"

	"rtcp"
)

// A server learns of its links and of its name's registration from
// OnEvent: here it waits until the DP serves its name. The same events
// say when a link is lost, when the DP cannot be reached (with the wait
// before the next attempt), and when another server took the name.
func ExampleListenConfig_onEvent() {
	dpAddr, stop := startDP()
	defer stop()

	registered := make(chan struct{})
	lc := rtcp.ListenConfig{OnEvent: func(e rtcp.Event) {
		// One goroutine calls OnEvent, in order; it must return soon.
		switch e.Kind {
		case rtcp.EventLinkUp:
			fmt.Printf("link up to the DP, %d link(s)\n", e.Links)
		case rtcp.EventRegistered:
			fmt.Println("registered")
			close(registered)
		case rtcp.EventNameLost:
			log.Printf("another server took our name: %v", e.Err)
		}
	}}
	l, err := lc.Listen(context.Background(), dpAddr, "printer-7")
	if err != nil {
		log.Fatal(err)
	}
	<-registered
	l.Close()
	// Output:
	// link up to the DP, 1 link(s)
	// registered
}
