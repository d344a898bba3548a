package query

import (
	"encoding/json"
	"runtime"
	"strconv"
	"strings"
	"sync"
)

// undefined is the value of a missing property: it is not null, and every
// comparison with it is undefined, which filters a document out.
type undefined struct{}

// Undefined is the value of a missing property.
var Undefined = undefined{}

// Doc is a document a query reads: Lookup resolves a property path (the
// segments already split) to a value — nil for null, string, float64 or
// json.Number, bool, map[string]any or []any — and reports whether it is
// defined.
type Doc interface {
	Lookup(path []string) (any, bool)
}

// Expr is a parsed expression.
type Expr interface {
	Eval(d Doc) any
}

// Path is a property path.
type Path struct {
	Segs []string
	pos  int
}

// String joins the segments with dots.
func (p *Path) String() string { return strings.Join(p.Segs, ".") }

// Eval looks the path up.
func (p *Path) Eval(d Doc) any {
	v, ok := d.Lookup(p.Segs)
	if !ok {
		return Undefined
	}
	return normalize(v)
}

type literal struct{ v any }

func (l *literal) Eval(Doc) any { return l.v }

type unary struct {
	op string
	x  Expr
}

func (u *unary) Eval(d Doc) any {
	v := u.x.Eval(d)
	switch u.op {
	case "not":
		if b, ok := v.(bool); ok {
			return !b
		}
	case "-":
		if f, ok := v.(float64); ok {
			return -f
		}
	}
	return Undefined
}

type binary struct {
	op   string
	l, r Expr
}

func (b *binary) Eval(d Doc) any {
	l := b.l.Eval(d)
	switch b.op {
	case "and":
		lb, lok := l.(bool)
		if lok && !lb {
			return false
		}
		rb, rok := b.r.Eval(d).(bool)
		if rok && !rb {
			return false
		}
		if lok && rok {
			return true
		}
		return Undefined
	case "or":
		lb, lok := l.(bool)
		if lok && lb {
			return true
		}
		rb, rok := b.r.Eval(d).(bool)
		if rok && rb {
			return true
		}
		if lok && rok {
			return false
		}
		return Undefined
	}
	r := b.r.Eval(d)
	switch b.op {
	case "+", "-", "*", "/", "%":
		return arith(b.op, l, r)
	}
	return compare(b.op, l, r)
}

func arith(op string, l, r any) any {
	x, ok1 := l.(float64)
	y, ok2 := r.(float64)
	if !ok1 || !ok2 {
		return Undefined
	}
	switch op {
	case "+":
		return x + y
	case "-":
		return x - y
	case "*":
		return x * y
	case "/":
		if y == 0 {
			return Undefined
		}
		return x / y
	}
	if y == 0 {
		return Undefined
	}
	return float64(int64(x) % int64(y))
}

// compare compares primitives of the same type; anything else (objects,
// arrays, mixed types, undefined) is undefined (service-api §6.3). Strings
// compare ordinally and case-sensitively.
func compare(op string, l, r any) any {
	var c int
	switch x := l.(type) {
	case nil:
		if r != nil {
			return Undefined
		}
		if op == "=" {
			return true
		}
		if op == "!=" {
			return false
		}
		return Undefined
	case bool:
		y, ok := r.(bool)
		if !ok {
			return Undefined
		}
		if op == "=" {
			return x == y
		}
		if op == "!=" {
			return x != y
		}
		return Undefined
	case float64:
		y, ok := r.(float64)
		if !ok {
			return Undefined
		}
		c = cmpFloat(x, y)
	case string:
		y, ok := r.(string)
		if !ok {
			return Undefined
		}
		c = strings.Compare(x, y)
	default:
		return Undefined
	}
	switch op {
	case "=":
		return c == 0
	case "!=":
		return c != 0
	case "<":
		return c < 0
	case ">":
		return c > 0
	case "<=":
		return c <= 0
	case ">=":
		return c >= 0
	}
	return Undefined
}

func cmpFloat(x, y float64) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

type in struct {
	x    Expr
	list []any
	not  bool
}

func (e *in) Eval(d Doc) any {
	v := e.x.Eval(d)
	if v == Undefined {
		return Undefined
	}
	for _, c := range e.list {
		if compare("=", v, c) == true {
			return !e.not
		}
	}
	return e.not
}

type call struct {
	name string
	args []Expr
}

func (c *call) Eval(d Doc) any {
	v := c.args[0].Eval(d)
	switch c.name {
	case "IS_DEFINED":
		return v != Undefined
	case "IS_NULL":
		return v == nil
	case "IS_STRING":
		_, ok := v.(string)
		return ok
	case "IS_NUMBER":
		_, ok := v.(float64)
		return ok
	case "IS_BOOL":
		_, ok := v.(bool)
		return ok
	case "IS_OBJECT":
		_, ok := v.(map[string]any)
		return ok
	case "IS_ARRAY":
		_, ok := v.([]any)
		return ok
	case "IS_PRIMITIVE":
		switch v.(type) {
		case nil, string, float64, bool:
			return true
		}
		return false
	case "STARTSWITH", "ENDSWITH":
		s, ok1 := v.(string)
		a, ok2 := c.args[1].Eval(d).(string)
		if !ok1 || !ok2 {
			return Undefined
		}
		if c.name == "STARTSWITH" {
			return strings.HasPrefix(s, a)
		}
		return strings.HasSuffix(s, a)
	}
	return Undefined
}

// normalize turns json.Number and integers into float64, the query's one
// number type.
func normalize(v any) any {
	switch x := v.(type) {
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil {
			return Undefined
		}
		return f
	case int:
		return float64(x)
	case int64:
		return float64(x)
	}
	return v
}

// Match reports whether d satisfies the WHERE clause: only true counts.
func (q *Query) Match(d Doc) bool { return Matches(q.Where, d) }

// Matches reports whether cond is true for d; a nil cond matches all.
func Matches(cond Expr, d Doc) bool {
	return cond == nil || cond.Eval(d) == true
}

// Raw reports whether the result rows are projections or aggregates (item
// type Raw) rather than whole documents.
func (q *Query) Raw() bool { return !q.Star }

// Run evaluates the query over docs (in order) and returns its rows: for
// SELECT *, the matching docs themselves; otherwise projected maps or
// aggregate rows.
func (q *Query) Run(docs []Doc) []any {
	matched := q.filter(docs)
	var rows []any
	switch {
	case q.Star:
		for _, d := range matched {
			rows = append(rows, d)
		}
	case q.aggregated():
		rows = q.aggregate(matched)
	default:
		for _, d := range matched {
			rows = append(rows, q.project(d))
		}
	}
	if q.Top >= 0 && len(rows) > q.Top {
		rows = rows[:q.Top]
	}
	return rows
}

// parallelMin is the number of documents from which filtering is split
// across the CPUs.
const parallelMin = 4096

// filter returns the documents the WHERE clause selects, in order. Large
// inputs are split into one chunk per CPU; TOP without aggregates stops
// early instead.
func (q *Query) filter(docs []Doc) []Doc {
	if q.Top >= 0 && !q.aggregated() || len(docs) < parallelMin || runtime.GOMAXPROCS(0) == 1 {
		var matched []Doc
		for _, d := range docs {
			if q.Match(d) {
				matched = append(matched, d)
				if q.Top >= 0 && !q.aggregated() && len(matched) >= q.Top {
					break
				}
			}
		}
		return matched
	}
	parts := make([][]Doc, runtime.GOMAXPROCS(0))
	inParallel(len(docs), func(w, lo, hi int) {
		for _, d := range docs[lo:hi] {
			if q.Match(d) {
				parts[w] = append(parts[w], d)
			}
		}
	})
	var matched []Doc
	for _, p := range parts {
		matched = append(matched, p...)
	}
	return matched
}

// inParallel splits [0, n) into one chunk per CPU (or one chunk when n is
// small) and runs fn on each concurrently; w numbers the chunk.
func inParallel(n int, fn func(w, lo, hi int)) {
	workers := runtime.GOMAXPROCS(0)
	if n < parallelMin {
		workers = 1
	}
	size := (n + workers - 1) / workers
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		lo, hi := w*size, min((w+1)*size, n)
		if lo >= hi {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(w, lo, hi)
		}()
	}
	wg.Wait()
}

func (q *Query) aggregated() bool {
	if len(q.GroupBy) > 0 {
		return true
	}
	for _, it := range q.Items {
		if it.Agg != "" {
			return true
		}
	}
	return false
}

// project builds one output row; undefined values are left out.
func (q *Query) project(d Doc) map[string]any {
	row := map[string]any{}
	for _, it := range q.Items {
		if v := it.Expr.Eval(d); v != Undefined {
			row[it.Alias] = v
		}
	}
	return row
}

type group struct {
	id   string // the key as text
	key  []any
	n    int   // documents in the group
	docs []Doc // kept only when an aggregate needs the values
}

// aggregate groups docs by the GROUP BY paths (one group without them) and
// computes each group's row.
func (q *Query) aggregate(docs []Doc) []any {
	var groups []*group
	index := map[string]*group{}
	keepDocs := false
	for _, it := range q.Items {
		keepDocs = keepDocs || (it.Agg != "" && it.Agg != "COUNT")
	}
	if len(q.GroupBy) == 0 {
		groups = []*group{{n: len(docs), docs: docs}}
	}
	if len(q.GroupBy) > 0 {
		// Each CPU groups its chunk; the chunks' groups are then merged in
		// order, so groups and their documents keep document order.
		local := make([][]*group, runtime.GOMAXPROCS(0))
		inParallel(len(docs), func(w, lo, hi int) {
			seen := map[string]*group{}
			var buf []byte
			vals := make([]any, len(q.GroupBy))
			for _, d := range docs[lo:hi] {
				buf = buf[:0]
				for j, p := range q.GroupBy {
					vals[j] = p.Eval(d)
					buf = appendKey(buf, vals[j])
				}
				g := seen[string(buf)]
				if g == nil {
					g = &group{key: append([]any(nil), vals...), id: string(buf)}
					seen[g.id] = g
					local[w] = append(local[w], g)
				}
				g.n++
				if keepDocs {
					g.docs = append(g.docs, d)
				}
			}
		})
		for _, gs := range local {
			for _, g := range gs {
				if have := index[g.id]; have != nil {
					have.n += g.n
					have.docs = append(have.docs, g.docs...)
					continue
				}
				index[g.id] = g
				groups = append(groups, g)
			}
		}
	}
	rows := make([]any, 0, len(groups))
	for _, g := range groups {
		row := map[string]any{}
		for _, it := range q.Items {
			if it.Agg == "" {
				for i, p := range q.GroupBy {
					if p.String() == it.Expr.(*Path).String() && g.key[i] != Undefined {
						row[it.Alias] = g.key[i]
					}
				}
				continue
			}
			if v := aggregateValue(it, g); v != Undefined {
				row[it.Alias] = v
			}
		}
		rows = append(rows, row)
	}
	return rows
}

// appendKey appends a value's group key: its type and value, so "1" and 1
// fall in different groups.
func appendKey(b []byte, v any) []byte {
	switch x := v.(type) {
	case undefined:
		return append(b, "u;"...)
	case nil:
		return append(b, "z;"...)
	case bool:
		return strconv.AppendBool(append(b, 'b'), x)
	case float64:
		return append(strconv.AppendFloat(append(b, 'n'), x, 'g', -1, 64), ';')
	case string:
		b = strconv.AppendInt(append(b, 's'), int64(len(x)), 10)
		return append(append(b, ':'), x...)
	}
	j, _ := json.Marshal(v)
	return append(append(append(b, 'j'), j...), ';')
}

func aggregateValue(it Item, g *group) any {
	if it.Agg == "COUNT" {
		return float64(g.n)
	}
	docs := g.docs
	var sum float64
	n := 0
	var best any = Undefined
	for _, d := range docs {
		v := it.Expr.Eval(d)
		f, isNum := v.(float64)
		switch it.Agg {
		case "SUM", "AVG":
			if isNum {
				sum += f
				n++
			}
		case "MIN", "MAX":
			if v == Undefined || v == nil {
				continue
			}
			if best == Undefined {
				best = v
				continue
			}
			want := "<"
			if it.Agg == "MAX" {
				want = ">"
			}
			if compare(want, v, best) == true {
				best = v
			}
		}
	}
	switch it.Agg {
	case "SUM":
		return sum
	case "AVG":
		if n == 0 {
			return Undefined
		}
		return sum / float64(n)
	}
	return best
}
