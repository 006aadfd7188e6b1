from wistro.cli.main import main

main()
