from syncd.launch import main

raise SystemExit(main())
