.PHONY: demo test lint tools cluster-up cluster-down crds

demo:  ## set up everything and run the demo pipeline end to end
	bash hack/demo.sh

test:  ## set up everything and run every check and test tier
	bash hack/test.sh

lint:
	.venv/bin/ruff check operator tests && .venv/bin/mypy

tools:
	bash hack/build-tools.sh

cluster-up:
	bash hack/cluster.sh up

cluster-down:
	bash hack/cluster.sh down
