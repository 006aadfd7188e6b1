from wistro.cli import main

main()
