package wistro

import (
	"encoding/json"
	"errors"
	"strconv"
)

var errSlow = errors.New("not a simple frame")

// decodeFrame decodes one engine frame. The hot frames (invoke, result) are scanned by hand —
// the payloads ("data", "value") are kept as raw JSON, never parsed here — and anything
// unusual falls back to encoding/json.
func decodeFrame(buf []byte, m *inFrame) error {
	if err := scanFrame(buf, m); err == nil {
		return nil
	}
	*m = inFrame{}
	return json.Unmarshal(buf, m)
}

func scanFrame(b []byte, m *inFrame) error {
	return scanObject(b, func(key string, v []byte) (err error) {
		switch key {
		case "t":
			m.T, err = plainString(v)
		case "id":
			if m.ID, err = strconv.ParseInt(string(v), 10, 64); err != nil {
				err = errSlow
			}
		case "file":
			m.File, err = plainString(v)
		case "step":
			m.Step, err = plainString(v)
		case "data":
			m.Data = append(json.RawMessage(nil), v...)
		case "emits":
			m.Emits = append(json.RawMessage(nil), v...)
		case "value":
			m.Value = append(json.RawMessage(nil), v...)
		case "ok":
		case "ctx":
			err = scanCtx(v, &m.Ctx)
		case "files":
			err = json.Unmarshal(v, &m.Files)
		case "error":
			if string(v) != "null" {
				m.Error = &ErrorInfo{}
				err = json.Unmarshal(v, m.Error)
			}
		default:
			err = errSlow // a field this scanner does not know: let encoding/json decide
		}
		return err
	})
}

func scanCtx(b []byte, c *invokeCtx) error {
	return scanObject(b, func(key string, v []byte) (err error) {
		switch key {
		case "trace_id":
			c.TraceID, err = plainString(v)
		case "span_id":
			c.SpanID, err = plainString(v)
		case "step":
			c.Step, err = plainString(v)
		case "flows":
			if string(v) == "[]" {
				c.Flows = []string{}
			} else {
				err = json.Unmarshal(v, &c.Flows)
			}
		default:
			err = errSlow
		}
		return err
	})
}

// scanObject calls f with each key and raw value of the JSON object b.
func scanObject(b []byte, f func(key string, v []byte) error) error {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return errSlow
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		if skipSpace(b, i+1) != len(b) {
			return errSlow
		}
		return nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return errSlow
		}
		keyEnd, err := skipValue(b, i)
		if err != nil {
			return err
		}
		key, err := plainString(b[i:keyEnd])
		if err != nil {
			return err
		}
		i = skipSpace(b, keyEnd)
		if i >= len(b) || b[i] != ':' {
			return errSlow
		}
		start := skipSpace(b, i+1)
		end, err := skipValue(b, start)
		if err != nil {
			return err
		}
		if err := f(key, b[start:end]); err != nil {
			return err
		}
		i = skipSpace(b, end)
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
			continue
		}
		if i < len(b) && b[i] == '}' && skipSpace(b, i+1) == len(b) {
			return nil
		}
		return errSlow
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipValue returns the end of the JSON value starting at b[i] (not validated in depth).
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errSlow
	}
	switch b[i] {
	case '"':
		for j := i + 1; j < len(b); j++ {
			switch b[j] {
			case '\\':
				j++
			case '"':
				return j + 1, nil
			}
		}
		return 0, errSlow
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			case '"':
				end, err := skipValue(b, j)
				if err != nil {
					return 0, err
				}
				j = end - 1
			}
		}
		return 0, errSlow
	default:
		j := i
		for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\n' && b[j] != '\t' && b[j] != '\r' {
			j++
		}
		if j == i {
			return 0, errSlow
		}
		return j, nil
	}
}

// plainString decodes a JSON string with no escapes; others go the slow way.
func plainString(v []byte) (string, error) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return "", errSlow
	}
	inner := v[1 : len(v)-1]
	for _, c := range inner {
		if c == '\\' || c < 0x20 {
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return "", err
			}
			return s, nil
		}
	}
	return string(inner), nil
}
