.PHONY: demo test lint tools cluster-up cluster-down crds

demo:  ## set up everything and run the demo pipeline end to end (REAL=1: on a real node, as root)
	bash hack/demo.sh $(if $(REAL),--real)

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
