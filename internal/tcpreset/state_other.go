//go:build !linux

package tcpreset

func closedState(uintptr) bool { return false }
