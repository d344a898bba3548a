package query

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

type tokKind int

const (
	tEOF tokKind = iota
	tIdent
	tString
	tNumber
	tOp    // = != <> < > <= >= + - * / %
	tPunct // ( ) [ ] , .
)

type token struct {
	kind tokKind
	text string  // identifier name, operator, punctuation, or decoded string
	num  float64 // tNumber
	pos  int     // byte offset in the query, for errors
	raw  bool    // identifier written as [[name]]
}

// lex splits a query into tokens (service-api §6.2): identifiers (letters,
// digits, _ and $; [[escaped]]), strings in ' or " with \' \" \\ \uXXXX
// escapes, decimal and 0x numbers, operators and punctuation.
func lex(q string) ([]token, error) {
	var out []token
	i := 0
	for i < len(q) {
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '[' && strings.HasPrefix(q[i:], "[["):
			end := strings.Index(q[i+2:], "]]")
			if end < 0 {
				return nil, errorAt(i, "unterminated [[ identifier")
			}
			out = append(out, token{kind: tIdent, text: q[i+2 : i+2+end], pos: i, raw: true})
			i += end + 4
		case isIdentStart(c):
			j := i
			for j < len(q) && isIdentPart(q[j]) {
				j++
			}
			out = append(out, token{kind: tIdent, text: q[i:j], pos: i})
			i = j
		case c >= '0' && c <= '9':
			t, n, err := lexNumber(q, i)
			if err != nil {
				return nil, err
			}
			out = append(out, t)
			i = n
		case c == '\'' || c == '"':
			s, n, err := lexString(q, i)
			if err != nil {
				return nil, err
			}
			out = append(out, token{kind: tString, text: s, pos: i})
			i = n
		case strings.ContainsRune("(),.[]", rune(c)):
			out = append(out, token{kind: tPunct, text: string(c), pos: i})
			i++
		default:
			op := ""
			for _, o := range []string{"!=", "<>", "<=", ">=", "=", "<", ">", "+", "-", "*", "/", "%"} {
				if strings.HasPrefix(q[i:], o) {
					op = o
					break
				}
			}
			if op == "" {
				r, _ := utf8.DecodeRuneInString(q[i:])
				return nil, errorAt(i, "unexpected character %q", r)
			}
			out = append(out, token{kind: tOp, text: op, pos: i})
			i += len(op)
		}
	}
	return append(out, token{kind: tEOF, pos: len(q)}), nil
}

func isIdentStart(c byte) bool {
	return c == '_' || c == '$' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isIdentPart(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }

func lexNumber(q string, i int) (token, int, error) {
	j := i
	if strings.HasPrefix(strings.ToLower(q[i:]), "0x") {
		j = i + 2
		for j < len(q) && strings.ContainsRune("0123456789abcdefABCDEF", rune(q[j])) {
			j++
		}
		n, err := strconv.ParseUint(q[i+2:j], 16, 64)
		if err != nil {
			return token{}, 0, errorAt(i, "invalid hexadecimal number")
		}
		return token{kind: tNumber, num: float64(n), text: q[i:j], pos: i}, j, nil
	}
	for j < len(q) && (q[j] >= '0' && q[j] <= '9' || q[j] == '.' || q[j] == 'e' || q[j] == 'E' ||
		(q[j] == '-' || q[j] == '+') && (q[j-1] == 'e' || q[j-1] == 'E')) {
		j++
	}
	n, err := strconv.ParseFloat(q[i:j], 64)
	if err != nil {
		return token{}, 0, errorAt(i, "invalid number %q", q[i:j])
	}
	return token{kind: tNumber, num: n, text: q[i:j], pos: i}, j, nil
}

func lexString(q string, i int) (string, int, error) {
	quote := q[i]
	var b strings.Builder
	j := i + 1
	for j < len(q) {
		c := q[j]
		switch {
		case c == quote:
			return b.String(), j + 1, nil
		case c == '\\':
			if j+1 >= len(q) {
				return "", 0, errorAt(j, "unterminated escape")
			}
			switch e := q[j+1]; e {
			case '\'', '"', '\\', '/':
				b.WriteByte(e)
				j += 2
			case 'n':
				b.WriteByte('\n')
				j += 2
			case 't':
				b.WriteByte('\t')
				j += 2
			case 'u':
				if j+6 > len(q) {
					return "", 0, errorAt(j, "invalid \\u escape")
				}
				n, err := strconv.ParseUint(q[j+2:j+6], 16, 32)
				if err != nil {
					return "", 0, errorAt(j, "invalid \\u escape")
				}
				b.WriteRune(rune(n))
				j += 6
			default:
				return "", 0, errorAt(j, "invalid escape \\%c", e)
			}
		default:
			b.WriteByte(c)
			j++
		}
	}
	return "", 0, errorAt(i, "unterminated string")
}

// Error is a rejected query: what is wrong and where.
type Error struct {
	Pos int
	Msg string
}

func (e *Error) Error() string { return fmt.Sprintf("%s at position %d", e.Msg, e.Pos) }

func errorAt(pos int, format string, args ...any) *Error {
	return &Error{Pos: pos, Msg: fmt.Sprintf(format, args...)}
}
