package c8y_test

import (
	"context"
	"log"
	"net/http"
	"os"

	"rtcp"
	"rtcp/c8y"
)

// An agent that takes its operations from standard input (JSON in any
// layout, or SmartREST 530 lines) and prints the SmartREST message of each
// status change.
func ExampleAgent() {
	a := &c8y.Agent{
		URL:      "https://t123.cumulocity.com",
		User:     "t123/device01",
		Password: os.Getenv("C8Y_PASSWORD"),
		Status:   os.Stdout,
	}
	if err := a.Serve(context.Background(), os.Stdin); err != nil {
		log.Fatal(err)
	}
}

// A DP that plays the cloud's part: devices open their WebSocket to it,
// and clients reach them by the key's name through the DP.
func ExampleServer() {
	dp := new(rtcp.DiscoverPoint)
	go dp.ListenAndServe(":9000")
	srv := &c8y.Server{DP: dp, Token: os.Getenv("KEYS_TOKEN")}
	k, err := srv.NewKey("pi-7-vnc", 0)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("give the agent the operation 530,,127.0.0.1,5900,%s", k.Key)
	log.Fatal(http.ListenAndServe(":8080", srv))
}
