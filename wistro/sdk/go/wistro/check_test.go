package wistro

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
)

func verdictOf(t *testing.T, schema, payload string) verdict {
	t.Helper()
	checks := compileChecks(json.RawMessage(`{"t":` + schema + `}`))
	v, err := decodeJSON([]byte(payload))
	if err != nil {
		t.Fatalf("bad payload %s: %v", payload, err)
	}
	return checks["t"](v)
}

func TestCheckSubset(t *testing.T) {
	obj := `{"type":"object","properties":{"id":{"type":"integer"},"name":{"type":"string","maxLength":2}},"required":["id"],"additionalProperties":false}`
	for _, c := range []struct {
		schema, payload string
		want            verdict
	}{
		{obj, `{"id":1}`, valid},
		{obj, `{"id":1.0,"name":"éé"}`, valid},
		{obj, `{"id":1.5}`, invalid},
		{obj, `{"id":true}`, invalid},
		{obj, `{"name":"x"}`, invalid},
		{obj, `{"id":1,"name":"abc"}`, invalid},
		{obj, `{"id":1,"x":1}`, invalid},
		{obj, `{"id":123456789012345678901234567890}`, valid}, // an int to Python
		{`true`, `{"anything":[1,2]}`, valid},
		{`{"type":"string","format":"date-time"}`, `"x"`, unknown},
		{`{"type":"string","pattern":"^a"}`, `"a"`, unknown},
		{`{"enum":["a",null]}`, `null`, valid},
		{`{"enum":["a",null]}`, `"b"`, invalid},
		{`{"enum":[1,2]}`, `1`, unknown},
		{`{"anyOf":[{"type":"integer"},{"type":"null"}]}`, `null`, valid},
		{`{"oneOf":[{"type":"integer"},{"type":"number"}]}`, `1`, invalid},
		{`{"not":{"type":"string"}}`, `1`, valid},
		{`{"minimum":0,"exclusiveMaximum":10}`, `10`, invalid},
		{`{"minimum":0}`, `true`, unknown},
		{`{"$defs":{"A":{"type":"object","properties":{"a":{"$ref":"#/$defs/A"}}}},"$ref":"#/$defs/A"}`, `{"a":{"a":{}}}`, valid},
		{`{"$defs":{"A":{"type":"object","properties":{"a":{"$ref":"#/$defs/A"}}}},"$ref":"#/$defs/A"}`, `{"a":{"a":1}}`, invalid},
		{`{"$ref":"other.json"}`, `1`, unknown},
		{`{"items":{"type":"integer"},"minItems":1}`, `[1,2]`, valid},
		{`{"items":{"type":"integer"},"minItems":1}`, `[]`, invalid},
		{`{"items":[{"type":"integer"}]}`, `[1]`, unknown},
	} {
		if got := verdictOf(t, c.schema, c.payload); got != c.want {
			t.Errorf("schema %s, payload %s: got %d, want %d", c.schema, c.payload, got, c.want)
		}
	}
}

// TestCheckAgainstEngine runs the cases tests/polyglot/test_deferred_emits.py writes, each with
// the verdict of the engine's own validator: the worker's check may say valid only when the
// engine accepts, and invalid only when it refuses.
func TestCheckAgainstEngine(t *testing.T) {
	path := os.Getenv("WISTRO_CHECK_CASES")
	if path == "" {
		t.Skip("WISTRO_CHECK_CASES is not set (the Python test sets it)")
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cases []struct {
		Schema   json.RawMessage `json:"schema"`
		Payload  json.RawMessage `json:"payload"`
		EngineOK bool            `json:"engine_ok"`
		Decided  bool            `json:"decided"` // the check must not answer unknown
	}
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatal(err)
	}
	counts := map[verdict]int{}
	for _, c := range cases {
		got := verdictOf(t, string(c.Schema), string(c.Payload))
		counts[got]++
		switch {
		case got == valid && !c.EngineOK:
			t.Errorf("schema %s, payload %s: the check says valid, the engine refuses", c.Schema, c.Payload)
		case got == invalid && c.EngineOK:
			t.Errorf("schema %s, payload %s: the check says invalid, the engine accepts", c.Schema, c.Payload)
		case got == unknown && c.Decided:
			t.Errorf("schema %s, payload %s: the check cannot decide a case it should", c.Schema, c.Payload)
		}
	}
	t.Logf("%d cases: %d valid, %d invalid, %d unknown", len(cases), counts[valid], counts[invalid], counts[unknown])
}

func TestQuickDecodeMatchesEncodingJSON(t *testing.T) {
	for _, raw := range []string{
		`{"id":1,"name":"x","tags":["a","b"],"sub":{"ok":true,"n":null},"f":-1.5e3}`,
		`[]`, `{}`, `"é\"\u00e9"`, `[1,[2,[3]]]`, ` {"a" : [ 1 , 2 ] } `, `123456789012345678901234567890`,
	} {
		quick, end, ok := quickValue([]byte(raw), 0)
		if !ok || skipSpace([]byte(raw), end) != len(raw) {
			t.Fatalf("%s: not decoded by hand", raw)
		}
		d := json.NewDecoder(strings.NewReader(raw))
		d.UseNumber()
		var want any
		if err := d.Decode(&want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(quick, want) {
			t.Fatalf("%s: by hand %#v, encoding/json %#v", raw, quick, want)
		}
	}
}

func BenchmarkDeferEmitCheck(b *testing.B) {
	checks := compileChecks(json.RawMessage(`{"t":{"type":"object","properties":{"id":{"type":"integer"},"name":{"type":"string"}},"required":["id","name"]}}`))
	raw, _ := json.Marshal(map[string]any{"id": 1, "name": "x"})
	for i := 0; i < b.N; i++ {
		v, _ := decodeJSON(raw)
		if checks["t"](v) != valid {
			b.Fatal("not valid")
		}
	}
}
