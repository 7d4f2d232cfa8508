from tiergate.cli.main import main

main()
