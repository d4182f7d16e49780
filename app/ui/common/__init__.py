"""Building blocks every feature uses: the one bridge from the core's event
bus to the GUI thread, the one worker shape, plain-text labels, painting
helpers, the flow layout and SVG export."""
