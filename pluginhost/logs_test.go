package pluginhost

import (
	"bytes"
	"context"
	"testing"
	"time"
)

func TestLineWriterSplitsLines(t *testing.T) {
	j := newJournal[LogLine]()
	var tee bytes.Buffer
	w := &lineWriter{j: j, tee: &tee}
	// go-plugin writes a line and its newline in separate calls.
	writes := []string{
		`{"@level":"info","@message":"Configured","@timestamp":"2026-01-02T03:04:05.000006Z","backend":"memory"}`, "\n",
		"panic: boom", "\n",
		`{"@level":"debug",`, `"@message":"split"}` + "\r\n",
		"\n",
		"partial",
	}
	for _, s := range writes {
		if _, err := w.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	got := j.all()
	tests := []struct {
		level, message string
		json           bool
		field          string
	}{
		{"info", "Configured", true, "backend"},
		{"", "panic: boom", false, ""},
		{"debug", "split", true, ""},
	}
	if len(got) != len(tests) {
		t.Fatalf("got %d lines, want %d: %+v", len(got), len(tests), got)
	}
	for i, tt := range tests {
		l := got[i]
		if l.Level != tt.level || l.Message != tt.message || l.JSON != tt.json {
			t.Errorf("line %d = %+v, want level %q message %q json %v", i, l, tt.level, tt.message, tt.json)
		}
		if tt.field != "" && l.Fields[tt.field] == nil {
			t.Errorf("line %d lacks field %q: %v", i, tt.field, l.Fields)
		}
	}
	if want := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC); !got[0].Time.Equal(want) {
		t.Errorf("line 0 time = %v, want %v", got[0].Time, want)
	}
	if n := bytes.Count(tee.Bytes(), []byte("\n")); n != 3 {
		t.Errorf("tee got %d lines, want 3: %q", n, tee.String())
	}
}

func TestJournalWait(t *testing.T) {
	j := newJournal[int]()
	j.add(1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go func() {
		time.Sleep(10 * time.Millisecond)
		j.add(2)
		j.add(3)
	}()
	got, err := j.wait(ctx, func(v int) bool { return v == 3 })
	if err != nil || got != 3 {
		t.Errorf("wait = %d, %v; want 3", got, err)
	}
	short, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	if _, err := j.wait(short, func(v int) bool { return v == 4 }); err == nil {
		t.Error("wait for a missing item returned without error")
	}
}
