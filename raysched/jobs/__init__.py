"""Training job kinds: data-parallel, pipeline-parallel, parameter server, sweep."""
