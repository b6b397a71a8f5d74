"""PipelineRuns: the pure planner and Job builders, and the engine that applies their plans."""
