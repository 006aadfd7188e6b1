package wistro

import (
	"bytes"
	"encoding/json"
	"math"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// The worker's emit check: a subset of JSON Schema (draft 7, as the engine's fastjsonschema reads
// it), three-valued. valid only when the engine is certain to accept the payload too; unknown
// for any keyword, value or schema outside the subset (the emit then takes the round trip, and
// the engine decides). See docs/worker-protocol.md, "Deferred emits".

type verdict int8

const (
	invalid verdict = iota
	valid
	unknown
)

type check func(v any) verdict

var annotations = map[string]bool{
	"title": true, "description": true, "examples": true, "default": true, "$comment": true,
	"deprecated": true, "readOnly": true, "writeOnly": true, "$defs": true, "definitions": true,
}

var refPattern = regexp.MustCompile(`^#/(\$defs|definitions)/([A-Za-z0-9_.-]+)$`)

func alwaysUnknown(any) verdict { return unknown }
func alwaysValid(any) verdict   { return valid }

// compileChecks compiles invoke.emits: topic -> JSON Schema (or true: no schema).
func compileChecks(raw json.RawMessage) map[string]check {
	out := map[string]check{}
	var table map[string]json.RawMessage
	if err := json.Unmarshal(raw, &table); err != nil {
		return out
	}
	for topic, s := range table {
		schema, err := decodeJSON(s)
		if err != nil {
			out[topic] = alwaysUnknown
			continue
		}
		c := &compiler{root: schema, refs: map[string]check{}}
		out[topic] = c.compileAt(schema, true)
	}
	return out
}

// decodeJSON decodes raw JSON with numbers kept as json.Number: by hand for the payloads
// json.Marshal writes (the hot path of an emit), else with encoding/json.
func decodeJSON(raw []byte) (any, error) {
	if v, rest, ok := quickValue(raw, 0); ok && skipSpace(raw, rest) == len(raw) {
		return v, nil
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if d.More() {
		return nil, errSlow
	}
	return v, nil
}

// quickValue decodes the JSON value at b[i:] (ok false: let encoding/json decide). Its input is
// valid JSON (json.Marshal's or the engine's), so it checks the structure, not every byte.
func quickValue(b []byte, i int) (v any, end int, ok bool) {
	i = skipSpace(b, i)
	if i >= len(b) {
		return nil, 0, false
	}
	switch c := b[i]; {
	case c == '{':
		obj := map[string]any{}
		i = skipSpace(b, i+1)
		if i < len(b) && b[i] == '}' {
			return obj, i + 1, true
		}
		for {
			if i >= len(b) || b[i] != '"' {
				return nil, 0, false
			}
			kend, err := skipValue(b, i)
			if err != nil {
				return nil, 0, false
			}
			key, err := plainString(b[i:kend])
			if err != nil {
				return nil, 0, false
			}
			i = skipSpace(b, kend)
			if i >= len(b) || b[i] != ':' {
				return nil, 0, false
			}
			item, next, ok := quickValue(b, i+1)
			if !ok {
				return nil, 0, false
			}
			obj[key] = item
			i = skipSpace(b, next)
			if i < len(b) && b[i] == ',' {
				i = skipSpace(b, i+1)
				continue
			}
			if i < len(b) && b[i] == '}' {
				return obj, i + 1, true
			}
			return nil, 0, false
		}
	case c == '[':
		arr := []any{}
		i = skipSpace(b, i+1)
		if i < len(b) && b[i] == ']' {
			return arr, i + 1, true
		}
		for {
			item, next, ok := quickValue(b, i)
			if !ok {
				return nil, 0, false
			}
			arr = append(arr, item)
			i = skipSpace(b, next)
			if i < len(b) && b[i] == ',' {
				i++
				continue
			}
			if i < len(b) && b[i] == ']' {
				return arr, i + 1, true
			}
			return nil, 0, false
		}
	case c == '"':
		send, err := skipValue(b, i)
		if err != nil {
			return nil, 0, false
		}
		str, err := plainString(b[i:send])
		if err != nil {
			return nil, 0, false
		}
		return str, send, true
	case c == 't' && len(b)-i >= 4 && string(b[i:i+4]) == "true":
		return true, i + 4, true
	case c == 'f' && len(b)-i >= 5 && string(b[i:i+5]) == "false":
		return false, i + 5, true
	case c == 'n' && len(b)-i >= 4 && string(b[i:i+4]) == "null":
		return nil, i + 4, true
	case c == '-' || (c >= '0' && c <= '9'):
		nend, err := skipValue(b, i)
		if err != nil {
			return nil, 0, false
		}
		return json.Number(b[i:nend]), nend, true // as json.Marshal wrote it
	}
	return nil, 0, false
}

type compiler struct {
	root any
	mu   sync.Mutex // refs: compiled lazily, from the goroutines of concurrent invokes
	refs map[string]check
}

func isObject(v any) bool { _, ok := v.(map[string]any); return ok }

// count reads a non-negative integer keyword value.
func count(v any) (int, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(string(n))
	return i, err == nil && i >= 0
}

// number is a JSON number as the engine (Python) sees it: an int when written without a
// fraction or exponent, else a float. exact is false when a float64 cannot hold it exactly.
func number(n json.Number) (f float64, isInt bool, exact bool) {
	s := string(n)
	if !strings.ContainsAny(s, ".eE") {
		i, err := strconv.ParseInt(s, 10, 64)
		if err != nil || i > 1<<53 || i < -(1<<53) {
			return 0, true, false
		}
		return float64(i), true, true
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false, false
	}
	return f, false, true
}

func typeTest(name string) func(any) bool {
	switch name {
	case "null":
		return func(v any) bool { return v == nil }
	case "boolean":
		return func(v any) bool { _, ok := v.(bool); return ok }
	case "string":
		return func(v any) bool { _, ok := v.(string); return ok }
	case "number":
		return func(v any) bool { _, ok := v.(json.Number); return ok }
	case "integer":
		return func(v any) bool {
			n, ok := v.(json.Number)
			if !ok {
				return false
			}
			f, isInt, exact := number(n)
			return isInt || (exact && f == math.Trunc(f)) // draft 6+: 1.0 is an integer
		}
	case "array":
		return func(v any) bool { _, ok := v.([]any); return ok }
	case "object":
		return isObject
	}
	return nil
}

func all(checks []check, v any) verdict {
	out := valid
	for _, c := range checks {
		switch c(v) {
		case invalid:
			return invalid
		case unknown:
			out = unknown
		}
	}
	return out
}

func (c *compiler) compile(schema any) check { return c.compileAt(schema, false) }

func (c *compiler) compileAt(schema any, atRoot bool) check {
	switch s := schema.(type) {
	case bool:
		if s {
			return alwaysValid
		}
		return func(any) verdict { return invalid }
	case map[string]any:
		return c.compileObject(s, atRoot)
	}
	return alwaysUnknown
}

func (c *compiler) compileObject(s map[string]any, atRoot bool) check {
	if ref, ok := s["$ref"].(string); ok {
		return c.ref(ref) // siblings of $ref are ignored (as the engine does)
	}
	var checks []check
	for key, value := range s {
		if annotations[key] {
			continue
		}
		switch key {
		case "$schema":
			str, _ := value.(string)
			if !atRoot || strings.TrimSuffix(str, "#") != "http://json-schema.org/draft-07/schema" {
				return alwaysUnknown
			}
		case "type":
			var names []any
			switch t := value.(type) {
			case string:
				names = []any{t}
			case []any:
				names = t
			}
			if len(names) == 0 {
				return alwaysUnknown
			}
			var tests []func(any) bool
			for _, n := range names {
				name, _ := n.(string)
				test := typeTest(name)
				if test == nil {
					return alwaysUnknown
				}
				tests = append(tests, test)
			}
			checks = append(checks, func(v any) verdict {
				for _, t := range tests {
					if t(v) {
						return valid
					}
				}
				return invalid
			})
		case "properties":
			props, ok := value.(map[string]any)
			if !ok {
				return alwaysUnknown
			}
			subs := make(map[string]check, len(props))
			for k, sub := range props {
				subs[k] = c.compile(sub)
			}
			checks = append(checks, func(v any) verdict {
				obj, ok := v.(map[string]any)
				if !ok {
					return valid
				}
				out := valid
				for k, sub := range subs {
					if item, present := obj[k]; present {
						switch sub(item) {
						case invalid:
							return invalid
						case unknown:
							out = unknown
						}
					}
				}
				return out
			})
		case "required":
			list, ok := value.([]any)
			if !ok {
				return alwaysUnknown
			}
			keys := make([]string, 0, len(list))
			for _, k := range list {
				str, ok := k.(string)
				if !ok {
					return alwaysUnknown
				}
				keys = append(keys, str)
			}
			checks = append(checks, func(v any) verdict {
				obj, ok := v.(map[string]any)
				if !ok {
					return valid
				}
				for _, k := range keys {
					if _, present := obj[k]; !present {
						return invalid
					}
				}
				return valid
			})
		case "additionalProperties":
			if _, ok := s["patternProperties"]; ok {
				return alwaysUnknown
			}
			known := map[string]bool{}
			if props, ok := s["properties"].(map[string]any); ok {
				for k := range props {
					known[k] = true
				}
			}
			sub := c.compile(value)
			checks = append(checks, func(v any) verdict {
				obj, ok := v.(map[string]any)
				if !ok {
					return valid
				}
				out := valid
				for k, item := range obj {
					if known[k] {
						continue
					}
					switch sub(item) {
					case invalid:
						return invalid
					case unknown:
						out = unknown
					}
				}
				return out
			})
		case "items":
			if _, tuple := value.([]any); tuple {
				return alwaysUnknown
			}
			sub := c.compile(value)
			checks = append(checks, func(v any) verdict {
				arr, ok := v.([]any)
				if !ok {
					return valid
				}
				out := valid
				for _, item := range arr {
					switch sub(item) {
					case invalid:
						return invalid
					case unknown:
						out = unknown
					}
				}
				return out
			})
		case "minItems", "maxItems", "minProperties", "maxProperties", "minLength", "maxLength":
			limit, ok := count(value)
			if !ok {
				return alwaysUnknown
			}
			isMin := strings.HasPrefix(key, "min")
			var size func(any) (int, bool)
			switch {
			case strings.HasSuffix(key, "Items"):
				size = func(v any) (int, bool) { a, ok := v.([]any); return len(a), ok }
			case strings.HasSuffix(key, "Properties"):
				size = func(v any) (int, bool) { o, ok := v.(map[string]any); return len(o), ok }
			default:
				size = func(v any) (int, bool) {
					str, ok := v.(string)
					return utf8.RuneCountInString(str), ok
				}
			}
			checks = append(checks, func(v any) verdict {
				n, ok := size(v)
				if !ok || (isMin && n >= limit) || (!isMin && n <= limit) {
					return valid
				}
				return invalid
			})
		case "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum":
			bn, ok := value.(json.Number)
			if !ok {
				return alwaysUnknown
			}
			bound, _, exact := number(bn)
			if !exact {
				return alwaysUnknown
			}
			var ok2 func(float64) bool
			switch key {
			case "minimum":
				ok2 = func(x float64) bool { return x >= bound }
			case "maximum":
				ok2 = func(x float64) bool { return x <= bound }
			case "exclusiveMinimum":
				ok2 = func(x float64) bool { return x > bound }
			default:
				ok2 = func(x float64) bool { return x < bound }
			}
			checks = append(checks, func(v any) verdict {
				if _, isBool := v.(bool); isBool {
					return unknown
				}
				n, ok := v.(json.Number)
				if !ok {
					return valid
				}
				x, _, exact := number(n)
				if !exact {
					return unknown
				}
				if ok2(x) {
					return valid
				}
				return invalid
			})
		case "enum", "const":
			options := []any{value}
			if key == "enum" {
				list, ok := value.([]any)
				if !ok {
					return alwaysUnknown
				}
				options = list
			}
			var strs []string
			hasNull := false
			for _, o := range options {
				switch x := o.(type) {
				case nil:
					hasNull = true
				case string:
					strs = append(strs, x)
				default:
					return alwaysUnknown
				}
			}
			checks = append(checks, func(v any) verdict {
				if v == nil {
					if hasNull {
						return valid
					}
					return invalid
				}
				if str, ok := v.(string); ok {
					for _, o := range strs {
						if o == str {
							return valid
						}
					}
				}
				return invalid
			})
		case "anyOf", "allOf", "oneOf":
			list, ok := value.([]any)
			if !ok || len(list) == 0 {
				return alwaysUnknown
			}
			subs := make([]check, len(list))
			for i, sub := range list {
				subs[i] = c.compile(sub)
			}
			kind := key
			checks = append(checks, func(v any) verdict { return combine(kind, subs, v) })
		case "not":
			sub := c.compile(value)
			checks = append(checks, func(v any) verdict {
				switch sub(v) {
				case valid:
					return invalid
				case invalid:
					return valid
				}
				return unknown
			})
		default:
			return alwaysUnknown // outside the subset: the engine decides
		}
	}
	switch len(checks) {
	case 0:
		return alwaysValid
	case 1:
		return checks[0]
	}
	return func(v any) verdict { return all(checks, v) }
}

func combine(kind string, subs []check, v any) verdict {
	valids, unknowns := 0, 0
	for _, sub := range subs {
		switch sub(v) {
		case valid:
			valids++
		case unknown:
			unknowns++
		default:
			if kind == "allOf" {
				return invalid
			}
		}
	}
	switch {
	case kind == "anyOf" && valids > 0:
		return valid
	case unknowns > 0:
		return unknown
	case kind == "anyOf":
		return invalid
	case kind == "allOf":
		return valid
	case valids == 1: // oneOf
		return valid
	}
	return invalid
}

func (c *compiler) ref(ref string) check {
	c.mu.Lock()
	defer c.mu.Unlock()
	if found, ok := c.refs[ref]; ok {
		return found
	}
	var target any
	if ref == "#" {
		target = c.root
	} else if m := refPattern.FindStringSubmatch(ref); m != nil {
		if root, ok := c.root.(map[string]any); ok {
			if defs, ok := root[m[1]].(map[string]any); ok {
				target = defs[m[2]]
			}
		}
	}
	if target == nil {
		return alwaysUnknown
	}
	var once sync.Once
	var compiled check // compiled on first use (a model may refer to itself), by one goroutine
	lazy := func(v any) verdict {
		once.Do(func() { compiled = c.compile(target) })
		return compiled(v)
	}
	c.refs[ref] = lazy
	return lazy
}
