"""The pod's Kubernetes side: drain before a disruptive upgrade, node-label control."""
