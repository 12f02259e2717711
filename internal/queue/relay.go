package queue

// Cross-replica signals. Several `drover serve` replicas share one
// PostgreSQL; a submit on one must wake the long-poll claims parked on the
// others and the leader's control loop, wherever it runs. The queue raises
// the same signals it uses in-process (notify and wake) through a relay
// that a store-specific bus (LISTEN/NOTIFY on PostgreSQL) carries to the
// other replicas, which apply them with Receive. On SQLite there is one
// process and no relay.

// Signals carried between replicas.
const (
	// SignalClaimable: work may have become claimable (a completion
	// released a dependent, a release, a requeue, a retry).
	SignalClaimable = "claimable"
	// SignalSubmit: tasks were submitted (claimable work and demand).
	SignalSubmit = "submit"
	// SignalRegister: a worker registered (the leader's tick advances it).
	SignalRegister = "register"
)

// SetRelay registers f to forward this replica's signals to the others
// (nil removes it). f must not block: the bus coalesces and sends later.
func (s *Service) SetRelay(f func(signal string)) {
	if f == nil {
		s.relay.Store(nil)
		return
	}
	s.relay.Store(&f)
}

func (s *Service) relayOut(signal string) {
	if f := s.relay.Load(); f != nil {
		(*f)(signal)
	}
}

// Receive applies a signal raised on another replica, locally only (it is
// never relayed again): claimable work wakes the parked claims, a submit
// also wakes the control loop, any other signal wakes the control loop
// with its name as the reason.
func (s *Service) Receive(signal string) {
	switch signal {
	case SignalClaimable:
		s.notifyLocal()
	case SignalSubmit:
		s.notifyLocal()
		s.wakeLocal(signal)
	default:
		s.wakeLocal(signal)
	}
}
