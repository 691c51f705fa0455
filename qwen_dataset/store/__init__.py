"""The storage root: paths and atomic writes (:mod:`.paths`), content-addressed blobs (:mod:`.blobs`),
the inbox (:mod:`.inbox`) and the named places under the root (:mod:`.layout`)."""
