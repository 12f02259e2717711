package dashboard

import (
	"fmt"
	"html/template"
	"math"
	"time"

	"github.com/droverhq/drover/internal/core"
)

// eventRows is the input of the shared event table.
type eventRows struct {
	Now    time.Time
	Events []*core.Event
}

// funcs are the template helpers. None of them returns unescaped markup
// except the charts, which are built from numbers and escaped text.
var funcs = template.FuncMap{
	"isUUID": isUUID,
	// pair hands the event table its page time and rows.
	"pair": func(now time.Time, evs []*core.Event) eventRows { return eventRows{Now: now, Events: evs} },
	// ago renders the age of t at now ("12s ago"); "never" for nil.
	"ago": func(now time.Time, t any) string {
		var at time.Time
		switch x := t.(type) {
		case time.Time:
			at = x
		case *time.Time:
			if x == nil {
				return "never"
			}
			at = *x
		default:
			return ""
		}
		if at.IsZero() {
			return "never"
		}
		return fmtAge(now.Sub(at)) + " ago"
	},
	// clock renders a time as UTC "15:04:05" (with the date when it is not
	// today).
	"clock": func(now time.Time, t any) string {
		var at time.Time
		switch x := t.(type) {
		case time.Time:
			at = x
		case *time.Time:
			if x == nil {
				return "—"
			}
			at = *x
		}
		if at.IsZero() {
			return "—"
		}
		at = at.UTC()
		if at.Format("2006-01-02") == now.UTC().Format("2006-01-02") {
			return at.Format("15:04:05")
		}
		return at.Format("2006-01-02 15:04:05")
	},
	"iso":  func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"dur":  fmtAge,
	"secs": fmtSeconds,
	// secsp renders optional seconds ("—" for nil).
	"secsp": func(p *float64) string {
		if p == nil {
			return "—"
		}
		return fmtSeconds(*p)
	},
	"pct": func(f float64) string {
		if math.IsNaN(f) {
			return "—"
		}
		return fmt.Sprintf("%.1f %%", f*100)
	},
	"money": func(f float64) string { return fmt.Sprintf("$%.2f", f) },
	"deref": func(p any) string {
		switch x := p.(type) {
		case *int:
			if x != nil {
				return fmt.Sprint(*x)
			}
		case *float64:
			if x != nil {
				return fmt.Sprintf("%.0f", *x)
			}
		}
		return "—"
	},
	"progress": func(p *float64) string {
		if p == nil {
			return ""
		}
		return fmt.Sprintf("%.0f %%", *p*100)
	},
	"short": func(s string) string {
		if len(s) > 8 {
			return s[:8]
		}
		return s
	},
}

// fmtAge renders a duration the way people read ages: "45s", "5m12s",
// "3h04m", "2d3h".
func fmtAge(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
}
