package api

import (
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/store"
)

// TaskLink is a task related to another through a subtask step.
type TaskLink struct {
	TaskID   uuid.UUID `json:"task_id" swaggertype:"string" format:"uuid"`
	FullName string    `json:"full_name" example:"payments.process_refund@1.0.0"`
	Status   string    `json:"status" example:"complete"`
	// StepID and StepName are the parent's subtask step.
	StepID    uuid.UUID `json:"step_id" swaggertype:"string" format:"uuid"`
	StepName  string    `json:"step_name" example:"refund_payment"`
	CreatedAt time.Time `json:"created_at"`
}

// addLinks adds the task's parent and child subtasks to out.
func (h *taskHandlers) addLinks(r *http.Request, out *TaskResponse) error {
	links, err := h.engine.TaskLinks(r.Context(), out.TaskID)
	if err != nil {
		return err
	}
	if links.Parent != nil {
		l := linkJSON(*links.Parent)
		out.ParentTask = &l
	}
	for _, c := range links.Children {
		out.ChildTasks = append(out.ChildTasks, linkJSON(c))
	}
	return nil
}

func linkJSON(l store.TaskLink) TaskLink {
	return TaskLink{TaskID: l.TaskID, FullName: l.Namespace + "." + l.Name + "@" + l.Version, Status: l.Status,
		StepID: l.StepID, StepName: l.StepName, CreatedAt: l.CreatedAt}
}
