DROP TABLE fetch_slices;
