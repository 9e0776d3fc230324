//go:build !race

package rtcp

const raceEnabled = false
