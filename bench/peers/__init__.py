"""Programs of other task queues that the bench measures beside ours (bench/README.md, "The peer").

Each runs in a virtual environment of its own, never in the project's: nothing under this
package may import Django or the project.
"""
