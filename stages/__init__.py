"""The application layer: one module per stage of a study, each a `run(context, ...)` that needs no
Prefect. A stage reads and writes the warehouse (`warehouse/`), calls the library (`pipeline_lib/`)
and asks the orchestration (`flows/`, through `context.StudyContext`) to fan its units of work out.
The `flows/` are thin Prefect wrappers: they open the context once at the edge and run the stages.
"""
