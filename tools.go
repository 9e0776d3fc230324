//go:build tools

// This file pins the modules the project depends on before the code that
// imports them lands, so that go mod tidy keeps them.
package rtcp

import (
	_ "github.com/coder/websocket"
	_ "github.com/google/go-cmp/cmp"
	_ "github.com/hashicorp/yamux"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "go.uber.org/goleak"
	_ "golang.org/x/net/nettest"
	_ "golang.org/x/sync/errgroup"
)
