//go:build race

package rtcp

// raceEnabled scales load tests down under the race detector, which makes
// every goroutine several times slower and heavier.
const raceEnabled = true
