package orchestrator

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// PoolInput is everything Decide needs to size one pool. It is a plain
// value: the caller fills it from one tick's observations.
type PoolInput struct {
	Pool string
	Now  time.Time

	// Pool settings (effective values, defaults filled).
	Min, Max, IdleBuffer, Concurrency, MaxSpawnPerTick int
	IdleTimeout                                        time.Duration
	MaxHourlySpend                                     float64

	// Demand, in task slots.
	Claimable, Running int
	// Queued and OwnerBlocked only feed the explanations.
	Queued, OwnerBlocked int
	// DemandCap, when > 0, is the cap the queued-side counts were read with
	// (store.TaskDemandParams.Cap): a count equal to it means "at least"
	// and is shown as "≥N". It is at least max × concurrency, so the
	// decision is the same as with exact counts.
	DemandCap int

	// Workers by state (requested, provisioning and booting all count as
	// supply: a burst never duplicates spawns).
	Requested, Provisioning, Booting, Ready, Draining int
	// Idle lists the ready workers that hold no lease, with the time they
	// became idle (last task, else ready time).
	Idle []IdleWorker

	// HourlySpend is the summed hourly price of the pool's live workers;
	// PriceEstimate the expected price of one more (0 = unknown).
	HourlySpend, PriceEstimate float64
}

// IdleWorker is a ready worker without leases.
type IdleWorker struct {
	ID    uuid.UUID
	Since time.Time
}

// Decision is the output of Decide for one pool.
type Decision struct {
	Pool string `json:"pool"`
	// Demand and Supply are in task slots; Desired is in workers.
	Demand  int `json:"demand"`
	Supply  int `json:"supply"`
	Desired int `json:"desired"`
	// Spawn is how many workers to start this tick (before breakers).
	Spawn int `json:"spawn"`
	// Drain lists idle workers to scale down, longest idle first.
	Drain []uuid.UUID `json:"drain,omitempty"`
	// Reason explains the decision in one line.
	Reason string `json:"reason"`
	// Blocked lists why fewer workers are spawned than wanted.
	Blocked []string `json:"blocked,omitempty"`
}

// Decide sizes one pool. It is a pure function of its input (DESIGN §3.4):
//
//	demand  = claimable + running                          (task slots)
//	supply  = (ready + booting + provisioning + requested) × concurrency
//	desired = clamp(min, max, ceil(demand / concurrency) + idle_buffer)   (workers)
//
// Scale up by desired − supply (in workers), limited by max_spawn_per_tick
// and max_hourly_spend; breakers are applied later, at placement. Scale down
// only idle ready workers whose idle time exceeds idle_timeout, longest idle
// first, never leaving fewer than min ready workers, by draining them.
func Decide(in PoolInput) Decision {
	conc := max(in.Concurrency, 1)
	demand := in.Claimable + in.Running
	supplyW := in.Requested + in.Provisioning + in.Booting + in.Ready
	desired := ceilDiv(demand, conc) + in.IdleBuffer
	desired = min(max(desired, in.Min), in.Max)
	if desired < 0 {
		desired = 0
	}
	d := Decision{Pool: in.Pool, Demand: demand, Supply: supplyW * conc, Desired: desired}
	inputs := fmt.Sprintf("demand %s slots (%s claimable + %d running), supply %d slots (%d ready, %d booting, %d provisioning, %d requested), desired %d workers",
		atLeast(demand, in.Claimable, in.DemandCap), atLeast(in.Claimable, in.Claimable, in.DemandCap), in.Running, d.Supply, in.Ready, in.Booting, in.Provisioning, in.Requested, desired)

	want := desired - supplyW
	switch {
	case want > 0:
		n := want
		if in.MaxSpawnPerTick > 0 && n > in.MaxSpawnPerTick {
			n = in.MaxSpawnPerTick
			d.Blocked = append(d.Blocked, fmt.Sprintf("spawning %d of %d this tick: max_spawn_per_tick is %d", n, want, in.MaxSpawnPerTick))
		}
		if in.MaxHourlySpend > 0 {
			if in.HourlySpend >= in.MaxHourlySpend {
				d.Blocked = append(d.Blocked, fmt.Sprintf("not scaling up: hourly spend $%.2f reached max_hourly_spend $%.2f", in.HourlySpend, in.MaxHourlySpend))
				n = 0
			} else if in.PriceEstimate > 0 {
				room := int(math.Floor((in.MaxHourlySpend - in.HourlySpend) / in.PriceEstimate))
				if room < n {
					d.Blocked = append(d.Blocked, fmt.Sprintf("spawning %d of %d: max_hourly_spend $%.2f leaves room for %d at ~$%.2f/h", room, n, in.MaxHourlySpend, room, in.PriceEstimate))
					n = room
				}
			}
		}
		d.Spawn = n
		d.Reason = fmt.Sprintf("scale up by %d: %s", n, inputs)
	case want < 0:
		excess := -want
		var eligible []IdleWorker
		for _, w := range in.Idle {
			if in.Now.Sub(w.Since) >= in.IdleTimeout {
				eligible = append(eligible, w)
			}
		}
		slices.SortStableFunc(eligible, func(a, b IdleWorker) int {
			if c := a.Since.Compare(b.Since); c != 0 {
				return c
			}
			return strings.Compare(a.ID.String(), b.ID.String())
		})
		n := min(excess, len(eligible), max(in.Ready-in.Min, 0))
		for _, w := range eligible[:n] {
			d.Drain = append(d.Drain, w.ID)
		}
		if n > 0 {
			d.Reason = fmt.Sprintf("scale down by %d (idle over %s): %s", n, in.IdleTimeout, inputs)
		} else {
			d.Reason = fmt.Sprintf("hold: %d over desired but no ready worker idle over %s: %s", excess, in.IdleTimeout, inputs)
		}
	default:
		d.Reason = "hold: " + inputs
	}
	if in.Claimable == 0 && in.OwnerBlocked > 0 {
		d.Blocked = append(d.Blocked, fmt.Sprintf("%s queued tasks are held back by their owner's running limit and do not count as demand", atLeast(in.OwnerBlocked, in.OwnerBlocked, in.DemandCap)))
	}
	return d
}

// atLeast formats n, prefixed with "≥" when the count it derives from
// (counted) reached the demand cap and so is a lower bound.
func atLeast(n, counted, capAt int) string {
	if capAt > 0 && counted >= capAt {
		return fmt.Sprintf("≥%d", n)
	}
	return fmt.Sprint(n)
}

func ceilDiv(a, b int) int {
	if a <= 0 {
		return 0
	}
	return (a + b - 1) / b
}
