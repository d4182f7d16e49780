"""The Qt-free domain of Labdeck: paths, the store, the cluster model, the controller."""
