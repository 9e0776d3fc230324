//go:build !linux

package mux

import (
	"errors"
	"net"
	"syscall"
)

// SpliceFrom moves bytes in the kernel on Linux only; elsewhere it
// reports ok false and the caller copies.
func (st *Stream) SpliceFrom(src *net.TCPConn, count func(n int)) (n int64, ok bool, err error) {
	return 0, false, nil
}

const spliceRestOK = false

func (st *Stream) spliceRest(link syscall.RawConn, rest int, idle *IdleReader) (n int, ok bool, err error) {
	return 0, false, nil
}

// unsent cannot tell a socket's unsent bytes here.
func unsent(rc syscall.RawConn) int { return 0 }

// pipe stands for a Linux pipe; streams here never hold one.
type pipe struct{ r int }

func putPipe(*pipe, int) {}

func spliceOutWait(syscall.RawConn, *pipe, int) (int, error) { return 0, nil }

func spliceDrain(syscall.RawConn, *pipe, int) (int, error) { return 0, nil }

func readFull(int, []byte) (int, error) { return 0, errors.New("no pipes here") }

// A BulkSplicer splices on Linux only: NewBulkSplicer returns nil
// elsewhere, and the caller copies.
type BulkSplicer struct {
	Watch func() (stop func() error)
}

func NewBulkSplicer(dst, src *net.TCPConn) *BulkSplicer { return nil }

func (b *BulkSplicer) Splice(count func(int64)) (n int64, eof, ok, wfail bool, err error) {
	return 0, false, false, false, nil
}
