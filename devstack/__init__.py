"""The embedded stack, the demo and the sample makers: geoqueue on one machine, for trying it and
for the tests. Never imported by the fleet's runtime."""
