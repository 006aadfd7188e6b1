package wistro

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestDecodeFrameMatchesEncodingJSON(t *testing.T) {
	frames := []string{
		`{"t":"invoke","id":12,"file":"/p/a.step.go","step":"a","data":{"x":[1,{"y":"}]\"{"}],"z":null},"ctx":{"trace_id":"t1","span_id":"s1","step":"a","flows":["f"]}}`,
		`{"t":"result","id":3,"ok":true,"value":null}`,
		`{"t":"result","id":4,"ok":true,"value":{"k":"v","n":[1,2,3]}}`,
		`{"t":"error","id":5,"error":{"type":"PayloadError","message":"bad \"x\"","line":3}}`,
		`{"t":"load","id":1,"files":["/a.step.go","/b c.step.go"]}`,
		`{"t":"cancel","id":9}`,
		`{"t":"shutdown"}`,
		` { "t" : "invoke" , "id" : 2 , "file" : "/p/\u00e9.step.go" , "step" : "tab\there" , "data" : "str,}" , "ctx" : {} } `,
		`{"t":"invoke","id":2,"unknown":{"a":1},"data":7}`,
		`{"t":"result","id":6,"ok":true,"value":-1.5e3}`,
		`{}`,
		`{"t":"invoke","id":3,"ctx":{"trace_id":"a","span_id":"b","step":"c","flows":[]}}`,
		`{"t":"invoke","id":3,"ctx":{"trace_id":"a","span_id":null,"step":"c","flows":null,"x":1}}`,
	}
	for _, f := range frames {
		var want, got inFrame
		if err := json.Unmarshal([]byte(f), &want); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if err := decodeFrame([]byte(f), &got); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		normalize := func(m *inFrame) {
			if m.Data != nil {
				m.Data = compact(t, m.Data)
			}
			if m.Value != nil {
				m.Value = compact(t, m.Value)
			}
		}
		normalize(&want)
		normalize(&got)
		if !reflect.DeepEqual(want, got) {
			t.Fatalf("%s:\n got %+v\nwant %+v", f, got, want)
		}
	}
}

func compact(t *testing.T, raw json.RawMessage) json.RawMessage {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	out, _ := json.Marshal(v)
	return out
}

func TestDecodeFrameRejectsBrokenJSON(t *testing.T) {
	for _, f := range []string{`{"t":"invoke","id":`, `{"t":"x"`, `[1,2]`, `{"t":"result","id":1,"value":{"a":}`} {
		var m inFrame
		if err := decodeFrame([]byte(f), &m); err == nil {
			t.Fatalf("%s: want an error, got %+v", f, m)
		}
	}
}
