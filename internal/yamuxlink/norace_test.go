//go:build !race

package yamuxlink

const raceEnabled = false
