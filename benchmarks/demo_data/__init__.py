"""Small generated data sets in the real on-disk layouts (ImageNet folders, ADE20K, LaSOT, GOT-10k,
TrackingNet, COCO), for tests, demos and the main job when no data is configured."""
