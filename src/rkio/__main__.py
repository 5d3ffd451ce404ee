from rkio.cli.main import main

raise SystemExit(main())
