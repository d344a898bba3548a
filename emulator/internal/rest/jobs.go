package rest

import (
	"net/http"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
)

// handleCreateJob is PUT /jobs/v2/{id}: 200 with the queued job
// (service-api §7.1).
func (s *Server) handleCreateJob(w http.ResponseWriter, r *http.Request) {
	id := pathID(r, "id")
	var j iothub.Job
	if err := decode(r, &j); err != nil {
		s.writeError(w, r, err)
		return
	}
	if j.JobID == "" {
		j.JobID = id
	}
	if j.JobID != id {
		s.writeError(w, r, iothub.Errorf(iothub.ArgumentInvalid, "the body's jobId %q does not match the path's %q", j.JobID, id))
		return
	}
	out, err := s.hub.ScheduleJob(r.Context(), j)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleGetJob(w http.ResponseWriter, r *http.Request) {
	j, err := s.hub.Job(pathID(r, "id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, j)
}

func (s *Server) handleCancelJob(w http.ResponseWriter, r *http.Request) {
	j, err := s.hub.CancelJob(pathID(r, "id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, j)
}

// handleQueryJobs is GET /jobs/v2/query?jobType=&jobStatus=, paged like
// device queries (service-api §7.2).
func (s *Server) handleQueryJobs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	jobs := s.hub.Jobs(q.Get("jobType"), q.Get("jobStatus"))
	rows := make([]any, len(jobs))
	for i, j := range jobs {
		rows[i] = j
	}
	s.writePage(w, r, rows, iothub.ItemJobResponse, "jobs?"+q.Get("jobType")+"&"+q.Get("jobStatus"))
}
