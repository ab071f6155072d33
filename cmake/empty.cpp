// intentionally empty: keeps a component library valid before it has sources
