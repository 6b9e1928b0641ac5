package pluginhost

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"
)

// LogLine is one line the plugin wrote to stderr. SPIRE expects hclog JSON
// lines; a line that is not JSON (a panic, stray output) has only Raw and
// Message set, so tests can catch it.
type LogLine struct {
	// Level is hclog's @level: "trace", "debug", "info", "warn", "error".
	Level string
	// Message is @message, or the raw line when it is not JSON.
	Message string
	// Time is @timestamp.
	Time time.Time
	// Fields holds the line's other keys.
	Fields map[string]any
	// JSON reports whether the line was a JSON object.
	JSON bool
	// Raw is the line as written.
	Raw string
}

// parseLogLine decodes one stderr line.
func parseLogLine(raw []byte) LogLine {
	l := LogLine{Raw: string(raw), Message: string(raw)}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return l
	}
	l.JSON = true
	l.Message, _ = m["@message"].(string)
	l.Level, _ = m["@level"].(string)
	if ts, ok := m["@timestamp"].(string); ok {
		l.Time, _ = time.Parse("2006-01-02T15:04:05.000000Z07:00", ts)
	}
	delete(m, "@message")
	delete(m, "@level")
	delete(m, "@timestamp")
	l.Fields = m
	return l
}

// lineWriter splits what go-plugin copies from the child's stderr into lines
// (go-plugin writes a line and its newline in separate calls).
type lineWriter struct {
	mu  sync.Mutex
	buf []byte
	j   *journal[LogLine]
	tee io.Writer // optional copy of every line
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		line := bytes.TrimRight(w.buf[:i], "\r")
		if len(line) > 0 {
			w.j.add(parseLogLine(line))
			if w.tee != nil {
				fmt.Fprintf(w.tee, "%s\n", line)
			}
		}
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}
