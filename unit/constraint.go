package unit

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Op is a MachineMetadata operator beyond fleet's key=value.
type Op string

// The operators of MachineMetadata= terms other than key=value.
const (
	OpNotEqual  Op = "!="      // key!=v: the key is absent or has another value
	OpIn        Op = "in"      // key in (a,b): the key has one of the values
	OpNotIn     Op = "not in"  // key not in (a,b): the key is absent or has none of them
	OpExists    Op = "exists"  // key exists
	OpNotExists Op = "!exists" // key !exists
	OpGE        Op = ">="      // numeric comparisons: the value parses as a number
	OpGT        Op = ">"
	OpLE        Op = "<="
	OpLT        Op = "<"
	OpRegexp    Op = "~=" // key~=re: the value matches the (unanchored) Go regexp re
)

// Constraint is one MachineMetadata= term other than key=value. Terms are
// ANDed with each other and with the key=value terms.
type Constraint struct {
	Key    string
	Op     Op
	Values []string // one for !=, comparisons and ~=; the list of in / not in; none for exists
}

// String renders c the way it is written in a unit file.
func (c Constraint) String() string {
	switch c.Op {
	case OpIn, OpNotIn:
		return c.Key + " " + string(c.Op) + " (" + strings.Join(c.Values, ",") + ")"
	case OpExists, OpNotExists:
		return c.Key + " " + string(c.Op)
	}
	return c.Key + string(c.Op) + strings.Join(c.Values, "")
}

// Matcher returns a function that reports whether metadata md satisfies c,
// with c's regexp or number parsed once. c must have come from FleetOptions,
// which refuses a bad regexp or number; a bad one here matches nothing.
func (c Constraint) Matcher() func(md map[string]string) bool {
	key := c.Key
	switch c.Op {
	case OpNotEqual:
		want := c.first()
		return func(md map[string]string) bool { v, ok := md[key]; return !ok || v != want }
	case OpIn:
		vs := c.Values
		return func(md map[string]string) bool { v, ok := md[key]; return ok && slices.Contains(vs, v) }
	case OpNotIn:
		vs := c.Values
		return func(md map[string]string) bool { v, ok := md[key]; return !ok || !slices.Contains(vs, v) }
	case OpExists:
		return func(md map[string]string) bool { _, ok := md[key]; return ok }
	case OpNotExists:
		return func(md map[string]string) bool { _, ok := md[key]; return !ok }
	case OpGE, OpGT, OpLE, OpLT:
		n, err := strconv.ParseFloat(c.first(), 64)
		if err != nil {
			return func(map[string]string) bool { return false }
		}
		op := c.Op
		return func(md map[string]string) bool {
			v, ok := md[key]
			if !ok {
				return false
			}
			x, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return false
			}
			switch op {
			case OpGE:
				return x >= n
			case OpGT:
				return x > n
			case OpLE:
				return x <= n
			}
			return x < n
		}
	case OpRegexp:
		re, err := regexp.Compile(c.first())
		if err != nil {
			return func(map[string]string) bool { return false }
		}
		return func(md map[string]string) bool { v, ok := md[key]; return ok && re.MatchString(v) }
	}
	return func(map[string]string) bool { return false }
}

func (c Constraint) first() string {
	if len(c.Values) == 0 {
		return ""
	}
	return c.Values[0]
}

// token is one whitespace-separated value of an option line and the column
// (1-based, in the value as written) where it starts.
type token struct {
	text string
	col  int
}

// splitTokens splits one option value into its whitespace-separated values
// with their columns, for errors that say where a MachineMetadata= line is
// wrong. Double quotes group, and are removed; empty values are dropped.
func splitTokens(s string) ([]token, error) {
	s = joinContinuations(s)
	var (
		out    []token
		cur    strings.Builder
		start  = -1
		quoted bool
	)
	end := func() {
		if cur.Len() > 0 {
			out = append(out, token{text: cur.String(), col: start + 1})
		}
		cur.Reset()
		start = -1
	}
	// Bytes, not runes: the separators are ASCII, and other bytes must pass
	// through unchanged even when they are not valid UTF-8.
	for i := 0; i < len(s); i++ {
		c := s[i]
		if start < 0 && (quoted || !isSpace(c)) {
			start = i
		}
		switch {
		case c == '"':
			quoted = !quoted
		case !quoted && isSpace(c):
			end()
		default:
			cur.WriteByte(c)
		}
	}
	if quoted {
		return nil, fmt.Errorf("unclosed double quote in %q", clip(s))
	}
	end()
	return out, nil
}

// operatorHelp lists the accepted forms, for errors.
const operatorHelp = "want key=value, key!=value, key in (a,b), key not in (a,b), key exists, key !exists, key>=n, key>n, key<=n, key<n or key~=regexp"

// parseMetadataLine parses one MachineMetadata= value (after specifier
// expansion by expand) into fleet's key=value pairs and the other terms.
// Errors give the column of the offending term.
func parseMetadataLine(value string, expand func(string) string) (eq [][2]string, cons []Constraint, err error) {
	toks, err := splitTokens(value)
	if err != nil {
		return nil, nil, err
	}
	for i := range toks {
		toks[i].text = expand(toks[i].text)
	}
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		key, op, val, found := cutOperator(t.text)
		if found {
			key, val = strings.TrimSpace(key), strings.TrimSpace(val)
			if key == "" || (op == "=" && val == "") {
				return nil, nil, fmt.Errorf("column %d: %q is not key=value", t.col, clip(t.text))
			}
			if op == "=" {
				eq = append(eq, [2]string{key, val})
				continue
			}
			c := Constraint{Key: key, Op: Op(op), Values: []string{val}}
			if err := checkOperand(c, t.col); err != nil {
				return nil, nil, err
			}
			cons = append(cons, c)
			continue
		}
		// A bare key: the operator is the next word.
		if i+1 >= len(toks) {
			return nil, nil, fmt.Errorf("column %d: %q is not key=value (%s)", t.col, clip(t.text), operatorHelp)
		}
		next := toks[i+1]
		switch next.text {
		case "exists", "!exists":
			cons = append(cons, Constraint{Key: t.text, Op: Op(next.text)})
			i++
		case "in", "not":
			op, j := OpIn, i+2
			if next.text == "not" {
				if j >= len(toks) || toks[j].text != "in" {
					return nil, nil, fmt.Errorf("column %d: after %q, expected \"in\"", next.col, "not")
				}
				op, j = OpNotIn, j+1
			}
			vals, k, err := parseList(toks, j, toks[j-1])
			if err != nil {
				return nil, nil, err
			}
			cons = append(cons, Constraint{Key: t.text, Op: op, Values: vals})
			i = k
		default:
			return nil, nil, fmt.Errorf("column %d: %q is not key=value (%s)", t.col, clip(t.text), operatorHelp)
		}
	}
	return eq, cons, nil
}

// cutOperator splits key<op>value. fleet's '=' decides: the character before
// the first '=' may make it "!=", "~=", ">=" or "<=". Without '=', a '<' or
// '>' is a strict comparison.
func cutOperator(s string) (key, op, value string, found bool) {
	if i := strings.IndexByte(s, '='); i >= 0 {
		if i > 0 && strings.IndexByte("!~<>", s[i-1]) >= 0 {
			return s[:i-1], s[i-1 : i+1], s[i+1:], true
		}
		return s[:i], "=", s[i+1:], true
	}
	if i := strings.IndexAny(s, "<>"); i >= 0 {
		return s[:i], s[i : i+1], s[i+1:], true
	}
	return "", "", "", false
}

// parseList reads "(a,b,c)" from toks[j:], which may be split by spaces
// ("(a," "b)"), and returns the values and the index of its last token.
func parseList(toks []token, j int, after token) ([]string, int, error) {
	if j >= len(toks) || !strings.HasPrefix(toks[j].text, "(") {
		return nil, 0, fmt.Errorf("column %d: after %q, expected a list like (a,b)", after.col, after.text)
	}
	var b strings.Builder
	start := toks[j]
	k := j
	for ; k < len(toks); k++ {
		b.WriteString(toks[k].text)
		if strings.HasSuffix(toks[k].text, ")") {
			break
		}
	}
	if k == len(toks) {
		return nil, 0, fmt.Errorf("column %d: list %q has no closing ')'", start.col, clip(b.String()))
	}
	inner := strings.TrimSuffix(strings.TrimPrefix(b.String(), "("), ")")
	var vals []string
	for _, v := range strings.Split(inner, ",") {
		v = strings.TrimSpace(v)
		if v == "" || strings.ContainsAny(v, "()") {
			return nil, 0, fmt.Errorf("column %d: list %q has an empty or malformed value", start.col, clip(b.String()))
		}
		vals = append(vals, v)
	}
	return uniq(vals), k, nil
}

// checkOperand refuses a number or regexp that cannot be used.
func checkOperand(c Constraint, col int) error {
	v := c.first()
	switch c.Op {
	case OpGE, OpGT, OpLE, OpLT:
		if _, err := strconv.ParseFloat(v, 64); err != nil {
			return fmt.Errorf("column %d: %s: %q is not a number", col, c.Key+string(c.Op), clip(v))
		}
	case OpRegexp:
		if v == "" {
			return fmt.Errorf("column %d: %s~= needs a regexp", col, c.Key)
		}
		if _, err := regexp.Compile(v); err != nil {
			return fmt.Errorf("column %d: %s~=: %w", col, c.Key, err)
		}
	case OpNotEqual:
		if v == "" {
			return fmt.Errorf("column %d: %s!= needs a value", col, c.Key)
		}
	}
	return nil
}
