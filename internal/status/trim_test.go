package status

import "testing"

func TestTrimTableKeepsProblemsFirst(t *testing.T) {
	rows := []WorkerRow{{ID: "h1", Health: HealthHealthy}, {ID: "s1", Health: HealthStale}, {ID: "h2", Health: HealthHealthy},
		{ID: "i1", Health: HealthInitializing}, {ID: "h3", Health: HealthHealthy}}
	got, omitted := trimTable(rows, 3)
	if omitted != 2 || len(got) != 3 || got[0].ID != "h1" || got[1].ID != "s1" || got[2].ID != "i1" {
		t.Fatalf("trimTable = %+v, omitted %d; want h1 (first healthy kept in order), s1, i1 and 2 omitted", got, omitted)
	}
	all, omitted := trimTable(rows, 10)
	if omitted != 0 || len(all) != 5 {
		t.Fatalf("under the cap: %d rows, %d omitted", len(all), omitted)
	}
}
