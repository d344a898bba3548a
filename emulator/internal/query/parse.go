// Package query implements the IoT Hub query language over twins
// (service-api §6): SELECT [TOP n] ... FROM devices | devices.modules |
// devices.jobs [WHERE ...] [GROUP BY ...]. It parses a query and evaluates
// it over documents it is given; it knows nothing of storage or HTTP.
//
// It is strict where Azure is: ORDER BY, CONTAINS, STARTS_WITH, IN with
// parentheses and other constructs Azure rejects are errors with a
// position, so an app that works here does not fail on Azure.
package query

import (
	"math"
	"strings"
)

// Collection is what a query reads.
type Collection int

// Collections.
const (
	Devices Collection = iota // device twins
	Modules                   // module twins
	Jobs                      // per-device job records
)

// Query is a parsed query.
type Query struct {
	Top     int // -1: no TOP
	Star    bool
	Items   []Item
	From    Collection
	Where   Expr
	GroupBy []*Path
}

// Item is one entry of a select list.
type Item struct {
	Expr  Expr
	Agg   string // COUNT, SUM, AVG, MIN or MAX; "" for a plain expression
	Alias string // output name
}

var keywords = map[string]bool{"select": true, "top": true, "from": true, "where": true, "group": true, "by": true,
	"as": true, "and": true, "or": true, "not": true, "in": true, "nin": true, "order": true}

type parser struct {
	toks []token
	i    int
}

// Parse parses a query.
func Parse(q string) (*Query, error) {
	toks, err := lex(q)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	return p.query()
}

// ParseCondition parses a bare WHERE condition, as in a job's
// queryCondition ("*" selects everything).
func ParseCondition(cond string) (Expr, error) {
	if strings.TrimSpace(cond) == "*" {
		return nil, nil
	}
	toks, err := lex(cond)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	e, err := p.expr()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tEOF {
		return nil, errorAt(t.pos, "unexpected %q", t.text)
	}
	return e, nil
}

func (p *parser) peek() token { return p.toks[p.i] }
func (p *parser) next() token { t := p.toks[p.i]; p.i++; return t }

func (p *parser) isKeyword(kw string) bool {
	t := p.peek()
	return t.kind == tIdent && !t.raw && strings.EqualFold(t.text, kw)
}

func (p *parser) acceptKeyword(kw string) bool {
	if p.isKeyword(kw) {
		p.i++
		return true
	}
	return false
}

func (p *parser) expectKeyword(kw string) error {
	if !p.acceptKeyword(kw) {
		t := p.peek()
		return errorAt(t.pos, "expected %s, found %s", strings.ToUpper(kw), describe(t))
	}
	return nil
}

func (p *parser) accept(kind tokKind, text string) bool {
	t := p.peek()
	if t.kind == kind && t.text == text {
		p.i++
		return true
	}
	return false
}

func (p *parser) expect(kind tokKind, text string) error {
	if !p.accept(kind, text) {
		t := p.peek()
		return errorAt(t.pos, "expected %q, found %s", text, describe(t))
	}
	return nil
}

func describe(t token) string {
	if t.kind == tEOF {
		return "the end of the query"
	}
	if t.kind == tString {
		return "a string"
	}
	return "'" + t.text + "'"
}

func (p *parser) query() (*Query, error) {
	q := &Query{Top: -1}
	if err := p.expectKeyword("select"); err != nil {
		return nil, err
	}
	if p.acceptKeyword("top") {
		t := p.next()
		if t.kind != tNumber || t.num < 0 || t.num != math.Trunc(t.num) {
			return nil, errorAt(t.pos, "TOP needs a whole number")
		}
		q.Top = int(t.num)
	}
	if p.accept(tOp, "*") {
		q.Star = true
	} else if err := p.selectList(q); err != nil {
		return nil, err
	}
	if err := p.expectKeyword("from"); err != nil {
		return nil, err
	}
	if err := p.from(q); err != nil {
		return nil, err
	}
	if p.acceptKeyword("where") {
		e, err := p.expr()
		if err != nil {
			return nil, err
		}
		q.Where = e
	}
	if p.acceptKeyword("group") {
		if err := p.expectKeyword("by"); err != nil {
			return nil, err
		}
		for {
			t := p.peek()
			path, err := p.path()
			if err != nil {
				return nil, err
			}
			if path == nil {
				return nil, errorAt(t.pos, "GROUP BY needs a property path")
			}
			q.GroupBy = append(q.GroupBy, path)
			if !p.accept(tPunct, ",") {
				break
			}
		}
	}
	if t := p.peek(); t.kind != tEOF {
		if p.isKeyword("order") {
			return nil, errorAt(t.pos, "ORDER BY is not supported by IoT Hub queries")
		}
		return nil, errorAt(t.pos, "unexpected %s", describe(t))
	}
	return q, p.check(q)
}

func (p *parser) selectList(q *Query) error {
	unnamed := 0
	for {
		it, err := p.item()
		if err != nil {
			return err
		}
		if p.acceptKeyword("as") {
			t := p.next()
			if t.kind != tIdent {
				return errorAt(t.pos, "AS needs a name")
			}
			it.Alias = t.text
		}
		if it.Alias == "" {
			if path, ok := it.Expr.(*Path); ok && it.Agg == "" {
				it.Alias = path.Segs[len(path.Segs)-1]
			} else {
				unnamed++
				it.Alias = "$" + itoa(unnamed)
			}
		}
		q.Items = append(q.Items, it)
		if !p.accept(tPunct, ",") {
			return nil
		}
	}
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

var comparisons = map[string]bool{"=": true, "!=": true, "<>": true, "<": true, ">": true, "<=": true, ">=": true}

var aggregates = map[string]bool{"COUNT": true, "SUM": true, "AVG": true, "MIN": true, "MAX": true}

func (p *parser) item() (Item, error) {
	t := p.peek()
	if t.kind == tIdent && !t.raw && aggregates[strings.ToUpper(t.text)] && p.toks[p.i+1].text == "(" {
		p.i += 2
		agg := strings.ToUpper(t.text)
		it := Item{Agg: agg}
		if agg == "COUNT" {
			if err := p.expect(tPunct, ")"); err != nil {
				return it, err
			}
			return it, nil
		}
		arg := p.peek()
		path, err := p.path()
		if err != nil {
			return it, err
		}
		if path == nil {
			return it, errorAt(arg.pos, "%s needs a property path", agg)
		}
		it.Expr = path
		return it, p.expect(tPunct, ")")
	}
	e, err := p.expr()
	return Item{Expr: e}, err
}

func (p *parser) from(q *Query) error {
	t := p.next()
	if t.kind != tIdent || !strings.EqualFold(t.text, "devices") {
		return errorAt(t.pos, "FROM must be devices, devices.modules or devices.jobs")
	}
	q.From = Devices
	if p.accept(tPunct, ".") {
		s := p.next()
		switch {
		case s.kind == tIdent && strings.EqualFold(s.text, "modules"):
			q.From = Modules
		case s.kind == tIdent && strings.EqualFold(s.text, "jobs"):
			q.From = Jobs
		default:
			return errorAt(s.pos, "FROM must be devices, devices.modules or devices.jobs")
		}
	}
	return nil
}

// check applies the rules Azure enforces across clauses (service-api §6.2).
func (p *parser) check(q *Query) error {
	hasAgg := false
	for _, it := range q.Items {
		if it.Agg != "" {
			hasAgg = true
		}
	}
	if q.From == Jobs && (!q.Star || len(q.GroupBy) > 0) {
		return errorAt(0, "devices.jobs supports only SELECT * without GROUP BY")
	}
	if len(q.GroupBy) > 0 && q.From != Devices {
		return errorAt(0, "GROUP BY is supported only on devices")
	}
	if len(q.GroupBy) > 0 && q.Star {
		return errorAt(0, "GROUP BY needs a select list, not *")
	}
	if hasAgg || len(q.GroupBy) > 0 {
		for _, it := range q.Items {
			if it.Agg != "" {
				continue
			}
			path, ok := it.Expr.(*Path)
			if !ok || !inGroupBy(path, q.GroupBy) {
				return errorAt(0, "with aggregates, every other selected value must be a GROUP BY path")
			}
		}
	}
	return nil
}

func inGroupBy(path *Path, groups []*Path) bool {
	for _, g := range groups {
		if g.String() == path.String() {
			return true
		}
	}
	return false
}

// Expression grammar, lowest precedence first.
func (p *parser) expr() (Expr, error) { return p.or() }

func (p *parser) or() (Expr, error) {
	l, err := p.and()
	for err == nil && p.acceptKeyword("or") {
		var r Expr
		r, err = p.and()
		l = &binary{op: "or", l: l, r: r}
	}
	return l, err
}

func (p *parser) and() (Expr, error) {
	l, err := p.not()
	for err == nil && p.acceptKeyword("and") {
		var r Expr
		r, err = p.not()
		l = &binary{op: "and", l: l, r: r}
	}
	return l, err
}

func (p *parser) not() (Expr, error) {
	if p.acceptKeyword("not") {
		x, err := p.not()
		return &unary{op: "not", x: x}, err
	}
	return p.comparison()
}

func (p *parser) comparison() (Expr, error) {
	l, err := p.additive()
	if err != nil {
		return nil, err
	}
	t := p.peek()
	switch {
	case t.kind == tOp && comparisons[t.text]:
		p.i++
		r, err := p.additive()
		op := t.text
		if op == "<>" {
			op = "!="
		}
		return &binary{op: op, l: l, r: r}, err
	case p.isKeyword("in") || p.isKeyword("nin"):
		p.i++
		list, err := p.array()
		return &in{x: l, list: list, not: strings.EqualFold(t.text, "nin")}, err
	}
	return l, nil
}

func (p *parser) additive() (Expr, error) {
	l, err := p.multiplicative()
	for err == nil && (p.peek().text == "+" || p.peek().text == "-") && p.peek().kind == tOp {
		op := p.next().text
		var r Expr
		r, err = p.multiplicative()
		l = &binary{op: op, l: l, r: r}
	}
	return l, err
}

func (p *parser) multiplicative() (Expr, error) {
	l, err := p.unaryExpr()
	for err == nil && p.peek().kind == tOp && strings.Contains("*/%", p.peek().text) {
		op := p.next().text
		var r Expr
		r, err = p.unaryExpr()
		l = &binary{op: op, l: l, r: r}
	}
	return l, err
}

func (p *parser) unaryExpr() (Expr, error) {
	if p.accept(tOp, "-") {
		x, err := p.unaryExpr()
		return &unary{op: "-", x: x}, err
	}
	return p.primary()
}

func (p *parser) primary() (Expr, error) {
	t := p.peek()
	switch {
	case t.kind == tString:
		p.i++
		return &literal{v: t.text}, nil
	case t.kind == tNumber:
		p.i++
		return &literal{v: t.num}, nil
	case t.kind == tPunct && t.text == "(":
		p.i++
		e, err := p.expr()
		if err != nil {
			return nil, err
		}
		return e, p.expect(tPunct, ")")
	case t.kind == tPunct && t.text == "[":
		list, err := p.array()
		return &literal{v: list}, err
	case t.kind == tIdent && !t.raw:
		switch strings.ToLower(t.text) {
		case "true":
			p.i++
			return &literal{v: true}, nil
		case "false":
			p.i++
			return &literal{v: false}, nil
		case "null":
			p.i++
			return &literal{v: nil}, nil
		case "undefined":
			p.i++
			return &literal{v: Undefined}, nil
		}
		if p.toks[p.i+1].kind == tPunct && p.toks[p.i+1].text == "(" {
			return p.call()
		}
	}
	path, err := p.path()
	if err != nil {
		return nil, err
	}
	if path == nil {
		return nil, errorAt(t.pos, "unexpected %s", describe(t))
	}
	return path, nil
}

// array parses [constant, ...]; IN (...) with parentheses is an error, as
// on Azure.
func (p *parser) array() ([]any, error) {
	t := p.peek()
	if t.kind == tPunct && t.text == "(" {
		return nil, errorAt(t.pos, "IN and NIN take a list in square brackets, not parentheses")
	}
	if err := p.expect(tPunct, "["); err != nil {
		return nil, err
	}
	var list []any
	if p.accept(tPunct, "]") {
		return list, nil
	}
	for {
		et := p.peek()
		e, err := p.unaryExpr()
		if err != nil {
			return nil, err
		}
		lit, ok := constant(e)
		if !ok {
			return nil, errorAt(et.pos, "lists may hold only constants")
		}
		list = append(list, lit)
		if p.accept(tPunct, "]") {
			return list, nil
		}
		if err := p.expect(tPunct, ","); err != nil {
			return nil, err
		}
	}
}

func constant(e Expr) (any, bool) {
	switch x := e.(type) {
	case *literal:
		return x.v, true
	case *unary:
		if l, ok := x.x.(*literal); ok && x.op == "-" {
			if f, ok := l.v.(float64); ok {
				return -f, true
			}
		}
	}
	return nil, false
}

var functions = map[string]int{
	"IS_DEFINED": 1, "IS_NULL": 1, "IS_STRING": 1, "IS_NUMBER": 1, "IS_BOOL": 1,
	"IS_OBJECT": 1, "IS_ARRAY": 1, "IS_PRIMITIVE": 1, "STARTSWITH": 2, "ENDSWITH": 2,
}

func (p *parser) call() (Expr, error) {
	t := p.next()
	name := strings.ToUpper(t.text)
	n, ok := functions[name]
	if !ok {
		return nil, errorAt(t.pos, "function %s is not supported by IoT Hub queries", t.text)
	}
	p.i++ // (
	var args []Expr
	if !p.accept(tPunct, ")") {
		for {
			e, err := p.expr()
			if err != nil {
				return nil, err
			}
			args = append(args, e)
			if p.accept(tPunct, ")") {
				break
			}
			if err := p.expect(tPunct, ","); err != nil {
				return nil, err
			}
		}
	}
	if len(args) != n {
		return nil, errorAt(t.pos, "%s takes %d argument(s)", name, n)
	}
	if name == "IS_DEFINED" {
		if _, ok := args[0].(*Path); !ok {
			return nil, errorAt(t.pos, "IS_DEFINED takes a property path")
		}
	}
	return &call{name: name, args: args}, nil
}

// path parses ident(.ident)*; it returns nil, nil when no path starts here.
// A reserved word must be escaped as [[name]]; a leading collection name
// (devices., devices.jobs., devices.modules.) is dropped.
func (p *parser) path() (*Path, error) {
	t := p.peek()
	if t.kind != tIdent {
		return nil, nil
	}
	var segs []string
	for {
		s := p.next()
		if s.kind != tIdent {
			return nil, errorAt(s.pos, "expected a property name, found %s", describe(s))
		}
		if !s.raw && keywords[strings.ToLower(s.text)] {
			return nil, errorAt(s.pos, "%q is a reserved word; write [[%s]]", s.text, s.text)
		}
		segs = append(segs, s.text)
		if !p.accept(tPunct, ".") {
			break
		}
	}
	if len(segs) > 1 && strings.EqualFold(segs[0], "devices") {
		segs = segs[1:]
		if len(segs) > 1 && (strings.EqualFold(segs[0], "jobs") || strings.EqualFold(segs[0], "modules")) {
			segs = segs[1:]
		}
	}
	return &Path{Segs: segs, pos: t.pos}, nil
}
