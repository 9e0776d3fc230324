package mihini

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"testing"

	"rtcp"
	"rtcp/internal/flowtest"
)

// startDoor serves door on loopback. up receives a value each time a
// device link is reachable through the DP.
func startDoor(t *testing.T, door *Door) (addr string, up <-chan struct{}) {
	t.Helper()
	door.init()
	ch := make(chan struct{}, 16)
	door.ls.ready = func() { ch <- struct{}{} }
	l := listen(t)
	done := make(chan error, 1)
	go func() { done <- door.Serve(l) }()
	t.Cleanup(func() {
		door.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Door.Serve = %v, want ErrServerClosed", err)
		}
	})
	return l.Addr().String(), ch
}

// The DP's Policy governs a door's name (issue 14: links added with
// AddLink were always allowed, so an attacker's LISTEN on a Mihini door
// for a device's name took half of the device's clients and their bytes).
// A LISTEN on a door whose Key may not hold the name is closed with a
// logged reason, and the device on the door of the owner's key keeps
// every client.
func TestDoorPolicy(t *testing.T) {
	for _, key := range []string{"", "lab"} {
		t.Run("attacker's door key "+strconv.Quote(key), func(t *testing.T) {
			echo, _ := startEcho(t)
			dp := &rtcp.DiscoverPoint{Policy: &rtcp.Policy{
				Keys: map[string][]byte{
					"plant": []byte("plant-secret-0123456789abcdef0123"),
					"lab":   []byte("lab-secret-0123456789abcdef012345"),
				},
				AnonymousServers: true,
				AnonymousClients: true,
				Names:            []rtcp.NameRule{{Name: "plc-7", Owners: []string{"plant"}}},
			}}
			dpl := listen(t)
			dpDone := make(chan error, 1)
			go func() { dpDone <- dp.Serve(dpl) }()
			defer func() { dp.Close(); <-dpDone }()

			devAddr, up := startDoor(t, &Door{DP: dp, Name: "plc-7", Service: echo, Key: "plant"})
			logs, logger := flowtest.NewLogs()
			strangerAddr, strangerUp := startDoor(t, &Door{DP: dp, Name: "plc-7", Service: echo, Key: key, Logger: logger})

			ctx, cancel := context.WithCancel(context.Background())
			devDone := make(chan error, 1)
			go func() { devDone <- (&Device{Server: devAddr}).DialAndServe(ctx) }()
			defer func() { cancel(); <-devDone }()
			wait(t, up, "registration of the device")

			stranger := dial(t, strangerAddr)
			if _, err := stranger.Write(unhex("00 00 04 00")); err != nil {
				t.Fatal(err)
			}
			expectEnd(t, stranger, "a LISTEN for a name the policy gives to another key")
			refused := logs.Find(slog.LevelWarn, "mihini: device refused")
			if len(refused) != 1 || !strings.Contains(refused[0].Attrs["err"], `name "plc-7" belongs to another key`) {
				t.Errorf("refusals logged: %v, want one naming the policy's reason", refused)
			}
			select {
			case <-strangerUp:
				t.Error("the stranger's link was reachable through the DP")
			default:
			}

			for i := range 4 {
				c, err := rtcp.Dial(dpl.Addr().String(), "plc-7")
				if err != nil {
					t.Fatalf("rtcp.Dial: %v", err)
				}
				if err := echoOnce(c, pattern(1000, i)); err != nil {
					t.Errorf("client %d: %v", i, err)
				}
				c.Close()
			}
		})
	}
}

// Where the Policy admits no anonymous server, a LISTEN on a door without
// a Key is refused, and one on a door with a key of the Policy is taken.
func TestDoorPolicyAdmits(t *testing.T) {
	echo, _ := startEcho(t)
	dp := &rtcp.DiscoverPoint{Policy: &rtcp.Policy{
		Keys:             map[string][]byte{"plant": []byte("plant-secret-0123456789abcdef0123")},
		AnonymousClients: true,
	}}
	dpl := listen(t)
	dpDone := make(chan error, 1)
	go func() { dpDone <- dp.Serve(dpl) }()
	defer func() { dp.Close(); <-dpDone }()

	door := &Door{DP: dp, Name: "plc-7", Service: echo, Key: "plant"}
	addr, up := startDoor(t, door)
	ctx, cancel := context.WithCancel(context.Background())
	devDone := make(chan error, 1)
	go func() { devDone <- (&Device{Server: addr}).DialAndServe(ctx) }()
	defer func() { cancel(); <-devDone }()
	wait(t, up, "registration of the device")

	anon, _ := startDoor(t, &Door{DP: dp, Name: "plc-8", Service: echo})
	stranger := dial(t, anon)
	stranger.Write(unhex("00 00 04 00"))
	expectEnd(t, stranger, "a LISTEN on an anonymous door of a DP that takes only keys")
	if _, err := rtcp.Dial(dpl.Addr().String(), "plc-8"); err == nil {
		t.Error("rtcp.Dial reached the anonymous door's name")
	}

	c, err := rtcp.Dial(dpl.Addr().String(), "plc-7")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := echoOnce(c, []byte("the owner's door")); err != nil {
		t.Error(err)
	}
}
