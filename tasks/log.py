"""Structured logging of tasks: every line about a task carries its id, type and request id."""

import logging


def task_fields(task) -> str:
    return f"task_id={task.id} type={task.type} request_id={task.request_id or '-'}"


class TaskLogger(logging.LoggerAdapter):
    """A logger bound to one task: `key=value` fields are appended to each message."""

    def process(self, msg, kwargs):
        return f"{msg} {self.extra['fields']}", kwargs


def task_logger(task, name: str = "tasks.handler") -> TaskLogger:
    return TaskLogger(logging.getLogger(name), {"fields": task_fields(task)})
