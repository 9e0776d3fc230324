package rtcp

import (
	"log/slog"
	"time"

	"rtcp/internal/mux"
)

// DefaultWindowMemory is the default of DiscoverPoint.WindowMemory and
// ListenConfig.WindowMemory: one session grows by at most half of it, so
// 512 MiB lets a session fill a 200 ms path at 1 GB/s (a 256 MiB window)
// while leaving as much for the others.
const DefaultWindowMemory = 512 << 20

// flowConfig is what a DP or a Listener gives each session it runs:
// the budget its windows grow from, and how long a full session of a
// peer without flow control may hold up its link.
type flowConfig struct {
	budget *mux.Budget
	pipes  *mux.Budget
	stall  time.Duration
}

// relayPipes bounds the pipes (two descriptors, up to 1 MiB of the
// kernel's memory each) in which the sessions of one DP or Listener keep
// a burst that outruns a destination socket (mux.Config.Pipes): 128, or
// fewer when the process may open few files, so that the pipes take at
// most a sixteenth of its descriptors and stay inside the reserve that
// DefaultConnBudget leaves beside the connections.
func relayPipes() int64 {
	n := int64(128)
	if limit := openFileLimit(); limit > 0 {
		n = min(n, max(4, int64(limit)/32))
	}
	return n
}

func newFlowConfig(windowMemory int64, stall time.Duration) flowConfig {
	if windowMemory <= 0 {
		windowMemory = DefaultWindowMemory
	}
	return flowConfig{budget: mux.NewBudget(windowMemory), pipes: mux.NewBudget(relayPipes()), stall: stall}
}

// apply sets cfg's flow control, and the logger told of the sessions it
// cuts.
func (fc flowConfig) apply(cfg *mux.Config, log *slog.Logger) {
	cfg.Budget = fc.budget
	cfg.Pipes = fc.pipes
	cfg.StallTimeout = fc.stall
	cfg.Logger = log
}
