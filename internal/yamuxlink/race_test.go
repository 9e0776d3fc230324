//go:build race

package yamuxlink

// raceEnabled scales the bulk transfers down under the race detector,
// which makes every goroutine several times slower.
const raceEnabled = true
