package rest

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
)

// continuation is what an x-ms-continuation token carries: where the next
// page starts and which query it belongs to (service-api §6.1).
type continuation struct {
	Offset int    `json:"o"`
	Query  string `json:"q"`
}

func queryHash(q string) string {
	s := sha256.Sum256([]byte(q))
	return hex.EncodeToString(s[:8])
}

// handleQuery is POST /devices/query: a bare JSON array of up to
// x-ms-max-item-count rows (at most 100), x-ms-item-type, and
// x-ms-continuation only when another page exists (service-api §6.1).
func (s *Server) handleQuery(w http.ResponseWriter, r *http.Request) {
	var spec iothub.QuerySpec
	if err := decode(r, &spec); err != nil {
		s.writeError(w, r, err)
		return
	}
	res, err := s.hub.Query(spec.Query)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writePage(w, r, res.Rows, res.ItemType, spec.Query)
}

// writePage writes one page of rows: a bare JSON array of up to
// x-ms-max-item-count rows (at most 100) starting where the
// x-ms-continuation token says, x-ms-item-type, and a continuation token
// only when another page exists. key ties tokens to the request they came
// from.
func (s *Server) writePage(w http.ResponseWriter, r *http.Request, rows []any, itemType iothub.ItemType, key string) {
	size, err := pageSize(r.Header.Get(iothub.HeaderMaxItemCount))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	offset := 0
	if tok := r.Header.Get(iothub.HeaderContinuation); tok != "" {
		c, err := decodeContinuation(tok)
		if err != nil || c.Query != queryHash(key) {
			s.writeError(w, r, iothub.Errorf(iothub.ArgumentInvalid, "the continuation token is not valid for this query"))
			return
		}
		offset = min(c.Offset, len(rows))
	}
	end := min(offset+size, len(rows))
	page := rows[offset:end]
	if page == nil {
		page = []any{}
	}
	if end < len(rows) {
		b, _ := json.Marshal(continuation{Offset: end, Query: queryHash(key)})
		w.Header().Set(iothub.HeaderContinuation, base64.StdEncoding.EncodeToString(b))
	}
	w.Header().Set(iothub.HeaderItemType, string(itemType))
	writeJSON(w, http.StatusOK, page)
}

func pageSize(h string) (int, error) {
	if h == "" {
		return iothub.DefaultPageSize, nil
	}
	n, err := strconv.Atoi(h)
	if err != nil || n < 1 {
		return 0, iothub.Errorf(iothub.ArgumentInvalid, "x-ms-max-item-count must be a positive integer")
	}
	return min(n, iothub.MaxPageSize), nil
}

func decodeContinuation(tok string) (continuation, error) {
	var c continuation
	b, err := base64.StdEncoding.DecodeString(tok)
	if err != nil {
		return c, err
	}
	err = json.Unmarshal(b, &c)
	if c.Offset < 0 {
		c.Offset = 0
	}
	return c, err
}
