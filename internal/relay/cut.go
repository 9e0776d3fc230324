package relay

import (
	"errors"
	"io"
	"net"
)

// Cut reports whether err, as Join returns it, means the session was cut
// off (its link lost, a reset, a stall) rather than ended: nil is a clean
// end, and so are a side closed under the relay (net.ErrClosed, or
// io.ErrClosedPipe for a net.Pipe) and an io.EOF that reached it. A
// caller logs a cut where the user sees it.
func Cut(err error) bool {
	return err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.ErrClosedPipe) && !errors.Is(err, io.EOF)
}
