package mux

// SetNoPipes makes every pipe the session asks for fail to open, as when
// the process is out of descriptors.
func SetNoPipes(on bool) { noPipes.Store(on) }
